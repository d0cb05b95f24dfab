// The review desk's page script. Document and model text is only ever written with
// textContent or as input values: never as markup.
"use strict";
(function () {
  const doc = document.getElementById("doc");
  if (!doc) return;
  const id = doc.dataset.id;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const original = JSON.parse(document.getElementById("record-data").textContent);
  const form = document.getElementById("decide");
  const message = document.getElementById("message");

  function byField(selector, path) {
    return Array.from(document.querySelectorAll(selector)).filter(
      (el) => el.getAttribute("data-field") === path);
  }

  // --- boxes over the page images -------------------------------------------------------
  function placeBoxes(img) {
    const width = Number(img.dataset.width) || img.naturalWidth;
    const height = Number(img.dataset.height) || img.naturalHeight;
    if (!width || !height) return;
    img.parentElement.querySelectorAll(".box").forEach((box) => {
      const [x0, y0, x1, y1] = box.dataset.box.split(",").map(Number);
      box.style.left = (100 * x0 / width) + "%";
      box.style.top = (100 * y0 / height) + "%";
      box.style.width = (100 * (x1 - x0) / width) + "%";
      box.style.height = (100 * (y1 - y0) / height) + "%";
      box.classList.add("placed");
    });
  }
  document.querySelectorAll(".page img").forEach((img) => {
    if (img.complete && img.naturalWidth) placeBoxes(img);
    img.addEventListener("load", () => placeBoxes(img));
  });

  // --- selecting a field and its box, both ways ------------------------------------------
  function select(path, from) {
    document.querySelectorAll(".active").forEach((el) => el.classList.remove("active"));
    if (!path) return;
    const boxes = byField(".box", path);
    const rows = byField(".field", path);
    boxes.forEach((b) => b.classList.add("active"));
    rows.forEach((r) => r.classList.add("active"));
    if (from === "field" && boxes.length) {
      boxes[0].scrollIntoView({ block: "center", behavior: "instant" });
    }
    if (from === "box" && rows.length) {
      rows[0].scrollIntoView({ block: "center", behavior: "instant" });
      const input = rows[0].querySelector("input, select, textarea");
      if (input) input.focus({ preventScroll: true });
    }
  }
  form.addEventListener("focusin", (event) => {
    const cell = event.target.closest(".field");
    if (cell) select(cell.getAttribute("data-field"), "field");
  });
  form.addEventListener("click", (event) => {
    const cell = event.target.closest(".field");
    if (cell && !event.target.closest("button")) select(cell.getAttribute("data-field"), "field");
  });
  document.querySelectorAll(".box").forEach((box) =>
    box.addEventListener("click", () => select(box.getAttribute("data-field"), "box")));

  // --- the record as edited ---------------------------------------------------------------
  function valueOf(input) {
    const text = input.value;
    switch (input.dataset.kind) {
      case "bool": return text === "" ? null : text === "true";
      case "json":
        if (text.trim() === "") return null;
        try { return JSON.parse(text); } catch (e) { return { __invalid_json__: text }; }
      default: return text.trim() === "" ? null : text;
    }
  }
  function setPath(target, dotted, value) {
    const keys = dotted.split(".");
    let node = target;
    keys.slice(0, -1).forEach((key) => {
      if (node[key] === null || typeof node[key] !== "object") node[key] = {};
      node = node[key];
    });
    node[keys[keys.length - 1]] = value;
  }
  function collect() {
    const record = JSON.parse(JSON.stringify(original || {}));
    form.querySelectorAll("#fields [data-path]").forEach((input) =>
      setPath(record, input.dataset.path, valueOf(input)));
    form.querySelectorAll("table.items").forEach((table) => {
      const kind = table.dataset.kind;
      const items = Array.from(table.tBodies[0].rows).map((tr) => {
        const inputs = Array.from(tr.querySelectorAll("[data-key]"));
        if (kind === "objects") {
          const item = {};
          inputs.forEach((input) => { item[input.dataset.key] = valueOf(input); });
          return item;
        }
        if (kind === "rows") return inputs.map(valueOf);
        return valueOf(inputs[0]);
      });
      setPath(record, table.dataset.list, items);
    });
    return record;
  }

  // --- checking as the clerk types -----------------------------------------------------------
  function show(list, items, cls) {
    list.replaceChildren();
    items.forEach((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      if (cls) li.className = cls;
      list.appendChild(li);
    });
  }
  function say(text, cls) {
    message.textContent = text;
    message.className = "message " + (cls || "");
  }
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
    return { status: response.status, data };
  }
  let pending = null;
  async function check() {
    const { status, data } = await post(`/api/doc/${id}/check`, { record: collect() });
    document.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    if (status !== 200) { say(data.error || "check failed", "error"); return null; }
    const errors = document.getElementById("errors");
    show(errors, data.errors.map((e) => `${e.path}: ${e.message}`));
    data.errors.forEach((e) => byField(".field", e.path).forEach((el) => el.classList.add("invalid")));
    const live = document.getElementById("live-reasons");
    if (data.valid) {
      if (data.reasons.length) show(live, data.reasons);
      else show(live, ["all rules pass"], "ok");
    }
    document.getElementById("approve").textContent =
      data.valid && data.diff.length ? `Approve with ${data.diff.length} correction(s)` : "Approve";
    return data;
  }
  form.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(check, 250);
  });

  // --- rows -------------------------------------------------------------------------------
  form.addEventListener("click", (event) => {
    const del = event.target.closest("button.del");
    if (del) { del.closest("tr").remove(); check(); return; }
    const add = event.target.closest("button.add");
    if (add) {
      const table = Array.from(form.querySelectorAll("table.items")).find(
        (t) => t.dataset.list === add.dataset.add);
      const row = table.querySelector("template").content.firstElementChild.cloneNode(true);
      table.tBodies[0].appendChild(row);
      const first = row.querySelector("input, select, textarea");
      if (first) first.focus();
      check();
    }
  });

  // --- deciding ----------------------------------------------------------------------------
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "approve";
    const reviewer = document.getElementById("reviewer").value.trim();
    if (!reviewer) { say("Give your name first (it is stored with the decision).", "error"); return; }
    const body = { action, reviewer, version: Number(doc.dataset.version) };
    if (action === "reject") {
      body.reason = document.getElementById("reject-reason").value.trim();
      if (!body.reason) { say("Say why the document is rejected.", "error"); return; }
    } else {
      body.record = collect();
    }
    const { status, data } = await post(`/doc/${id}/decide`, body);
    if (status === 200) {
      doc.dataset.version = String(data.version);
      document.getElementById("version").value = String(data.version);
      document.getElementById("doc-version").textContent = String(data.version);
      const badge = document.getElementById("doc-status");
      badge.textContent = data.status;
      badge.className = "st st-" + data.status;
      say(`Saved: ${data.status} (version ${data.version}). `, "ok");
      const next = document.createElement("a");
      next.href = data.next;
      next.id = "go-next";
      next.textContent = "Next document →";
      message.appendChild(next);
    } else if (status === 409) {
      say(data.error + " Your edits are still on this page; nothing was saved.", "error stale");
    } else {
      say(data.error || `refused (${status})`, "error");
      if (data.errors) show(document.getElementById("errors"), data.errors.map((e) => `${e.path}: ${e.message}`));
    }
  });
})();
