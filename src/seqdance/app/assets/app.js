/* seqdance web app: submit a job, follow its place in the queue and its progress, then draw the report's panels. */
(function () {
  "use strict";
  const SR = window.SeqdanceReport;
  const config = JSON.parse(document.getElementById("app-config").textContent);
  const token = new URLSearchParams(window.location.search).get("token");
  const $ = (id) => document.getElementById(id);
  let current = null;

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({}, opts.headers || {}, token ? { Authorization: "Bearer " + token } : {});
    const response = await fetch(path, opts);
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch (e) {
      body = { error: (text.split("\n")[0] || response.status + " " + response.statusText) };
    }
    if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
    return body;
  }

  function fileUrl(job, name) {
    return "/api/jobs/" + job + "/files/" + encodeURIComponent(name) + (token ? "?token=" + encodeURIComponent(token) : "");
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function status(text) {
    $("status").textContent = text;
  }

  $("task").addEventListener("change", () => { $("mutants-row").hidden = $("task").value !== "variants"; });

  $("job-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const form = new FormData();
    form.append("task", $("task").value);
    form.append("fasta", $("fasta").value);
    form.append("mutants", $("mutants").value);
    form.append("properties", $("properties").value);
    const file = $("fasta-file").files[0];
    if (file) form.append("fasta_file", file, file.name);
    $("run").disabled = true;
    status("sending…");
    try {
      const job = await api("/api/jobs", { method: "POST", body: form });
      current = job.job;
      await follow(job);
    } catch (error) {
      status("");
      SR.showError(error);
    } finally {
      $("run").disabled = false;
    }
  });

  function describe(job) {
    if (job.state === "queued") return "queued: place " + job.position + " (" + job.waiting + " waiting)";
    if (job.state === "running") return "running: " + Math.round(100 * job.progress) + "%" + (job.message ? " · " + job.message : "");
    return job.state;
  }

  async function follow(job) {
    document.body.dataset.job = job.job;
    document.body.dataset.state = job.state;
    while (job.state === "queued" || job.state === "running") {
      status(describe(job));
      await new Promise((resolve) => setTimeout(resolve, 250));
      job = await api("/api/jobs/" + job.job);
      document.body.dataset.state = job.state;
    }
    if (job.state === "failed") {
      status("");
      throw new Error(job.error);
    }
    status("done");
    await show(job.job);
  }

  function listFiles(job, files) {
    const list = $("downloads");
    list.innerHTML = "";
    files.forEach((f) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = fileUrl(job, f.name);
      a.textContent = f.name;
      a.setAttribute("download", f.name);
      a.dataset.file = f.name;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" · " + f.label));
      list.appendChild(li);
    });
  }

  async function show(jobId) {
    const result = await api("/api/jobs/" + jobId + "/result");
    $("result").hidden = false;
    listFiles(jobId, result.files);
    const proteinSelect = $("structure-protein");
    proteinSelect.innerHTML = "";
    result.proteins.forEach((p) => { const o = document.createElement("option"); o.value = p.id; o.textContent = p.id; proteinSelect.appendChild(o); });
    const propertySelect = $("structure-property");
    if (!propertySelect.options.length) {
      config.mappable.forEach((name) => { const o = document.createElement("option"); o.value = name; o.textContent = name; propertySelect.appendChild(o); });
      if (config.mappable.indexOf("rmsf_nor") >= 0) propertySelect.value = "rmsf_nor";  /* as seqdance map */
    }
    const list = $("protein-list");
    list.hidden = false;
    SR.renderTable(list, result.run, (row) => {
      SR.selectedId = row.id;
      SR.redrawTable();
      SR.renderProtein($("protein"), result.proteins[row.panel]);
    });
    const first = result.run.rows.find((r) => r.panel !== null && r.panel !== undefined);
    if (first) {
      SR.selectedId = first.id;
      SR.redrawTable();
      SR.renderProtein($("protein"), result.proteins[first.panel]);
    }
    document.body.dataset.state = "shown";
  }

  $("structure-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const file = $("structure-file").files[0];
    if (!current || !file) {
      SR.showError(!current ? "run a prediction first" : "choose a structure file (PDB or mmCIF) to upload");
      return;
    }
    const form = new FormData();
    form.append("structure", file, file.name);
    form.append("protein", $("structure-protein").value);
    form.append("property", $("structure-property").value);
    $("structure-status").textContent = "colouring…";
    try {
      const answer = await api("/api/jobs/" + current + "/structure", { method: "POST", body: form });
      listFiles(current, answer.files);
      $("structure-status").textContent = "added " + answer.added.join(" and ");
    } catch (error) {
      $("structure-status").textContent = "";
      SR.showError(error);
    }
  });
  document.body.dataset.ready = "true";
})();
