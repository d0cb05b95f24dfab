"""The review desk and the night's report.

People act on what the pipeline doubts: `app` is the web application (`docextract review`),
`editing` validates a reviewer's record with the schema's own model and reruns its rules,
`fields` lays a record out as fields and editable tables with their evidence, `pages` finds the
page images, `report` writes the self-contained HTML report, `truth` turns reviewed records into
ground truth for `docextract eval`. All SQL is in `pipeline.store.reviews`.
"""
