"""Rendering: untrusted files -> cached page images, in a sandboxed subprocess.

- `raster`: the client the rest of the pipeline calls (`rasterize`, `cache_complete`, the page
  cache layout): chunks, time limits, the renderer fallback, page errors.
- `pagestream`: a document's pages while they render, so extraction starts with page 1.
- `client`: starts, feeds, times and kills render workers; `worker`: the subprocess itself
  (`python -m pipeline.render.worker`), which runs `poppler` or `pdfium` (`common` is what they
  share). The worker imports nothing heavy: keep this `__init__` free of imports.
- `passwords`: the passwords file for encrypted PDFs.
"""
