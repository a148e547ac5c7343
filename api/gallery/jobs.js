// The jobs page (live progress of every job, a form to start training) and one job's page
// (its loss curves while it trains). Losses are reported one step at a time, so the curves
// are the reports this page has seen since it was opened, kept per job while the tab lives.

import { allPages, api, getJSON, imageURL, postJSON, query } from "./api.js";
import { lineChart, memberColour } from "./charts.js";
import { badge, errorBox, eta, h, num, progressBar, short, when } from "./dom.js";
import { numbersDetails, picture } from "./model.js";

const ACTIVE = new Set(["queued", "running"]);
const seen = new Map(); // job id -> [{step, d_loss, g_loss, wasserstein}]

function record(job) {
  const p = job.progress || {};
  if (!p.d_loss && !p.wasserstein) return;
  const reports = seen.get(job.id) || [];
  if (!reports.length || reports[reports.length - 1].step !== p.step) {
    reports.push({ step: p.step, d_loss: p.d_loss, g_loss: p.g_loss, wasserstein: p.wasserstein });
  }
  seen.set(job.id, reports);
}

function perMember(jobId, key) {
  const reports = (seen.get(jobId) || []).filter((r) => r[key]);
  if (!reports.length) return [];
  return reports[reports.length - 1][key].map((_, k) => ({
    name: `member ${k}`, colour: memberColour(k), points: reports.map((r) => [r.step, r[key][k]]),
  }));
}

function lossCell(job) {
  const p = job.progress || {};
  if (!p.d_loss) return h("span", { class: "muted" }, job.kind === "train" ? "–" : "");
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return h("div", { class: "loss-cell" },
           lineChart(perMember(job.id, "d_loss"), { width: 160, height: 48 }),
           h("small", {}, `D ${num(mean(p.d_loss))} · G ${num(mean(p.g_loss || [0]))}`));
}

// What a job works on, in a few words: the visualisation, or the data it trains on.
function jobSubject(job) {
  if (job.kind === "visualise") {
    const member = job.params.member;
    return `${job.params.what} · ${member === undefined || member === null ? "all members" : `member ${member}`}`;
  }
  return job.params.dataset || (job.params.dataset_id ? `upload ${short(job.params.dataset_id)}` : "");
}

// A visualisation job outlives its model (deleting a model keeps the jobs' history): link the
// model only while it exists. `models` is the set of this owner's model ids, or null if unknown.
function modelLink(job, models) {
  if (job.model_id) return h("a", { href: `#/models/${job.model_id}` }, "Open model");
  const source = job.kind === "visualise" || job.kind === "train_prior" ? job.params.model_id : null;
  if (!source) return "";
  if (models && !models.has(source)) return h("span", { class: "muted model-deleted" }, `model ${short(source)} was deleted`);
  return h("a", { href: `#/models/${source}` }, "Its model");
}

function jobRow(job, models) {
  const p = job.progress || {};
  return h("tr", { dataset: { jobId: job.id, status: job.status } },
           h("td", {}, h("a", { href: `#/jobs/${job.id}` }, short(job.id))),
           h("td", {}, job.kind, h("small", { class: "muted" }, ` ${jobSubject(job)}`)),
           h("td", {}, badge(job.status)),
           h("td", { class: "progress-cell" }, progressBar(p.fraction),
             h("small", {}, `${num(p.step)} / ${num(p.total)}`)),
           h("td", {}, job.status === "running" ? eta(p.eta_s) : "–"),
           h("td", {}, lossCell(job)),
           h("td", {}, when(job.created_at)),
           h("td", {}, modelLink(job, models)));
}

function jobsTable(jobs, models) {
  if (!jobs.length) return h("p", { class: "muted" }, "No jobs yet: start a training run above.");
  // Wide tables scroll inside their own box, so a phone's page keeps its width.
  return h("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-label": "jobs" }, h("table", { class: "jobs" },
           h("thead", {}, h("tr", {}, ["Job", "Kind", "Status", "Progress", "ETA", "Critic loss", "Created", "Model"]
             .map((t) => h("th", {}, t)))),
           h("tbody", {}, jobs.map((job) => jobRow(job, models)))));
}

// The ids of the owner's models, for telling a deleted model from a live one.
const modelIds = async () => new Set((await allPages("/v1/models?limit=100")).map((m) => m.id));

async function trainForm(onStarted) {
  const status = h("div", { class: "form-status" });
  const select = h("select", { name: "dataset", required: true });
  async function fillDatasets() {
    const [builtin, mine] = await Promise.all([getJSON("/v1/datasets/builtin"), allPages("/v1/datasets?limit=100")]);
    select.replaceChildren(
      h("optgroup", { label: "Built in" }, builtin.filter((d) => d.available)
        .map((d) => h("option", { value: `builtin:${d.name}` }, `${d.name} (${d.kind})`))),
      h("optgroup", { label: "Your uploads" }, mine.filter((d) => d.status === "ready")
        .map((d) => h("option", { value: `id:${d.id}` }, `${d.name} · ${num(d.n_items)} images`))));
  }
  await fillDatasets();
  const form = h("form", { class: "train-form" },
    h("label", {}, "Dataset ", select),
    h("label", {}, "Members k ", h("input", { name: "k", type: "number", min: 1, max: 128, value: 4 })),
    h("label", {}, "Steps ", h("input", { name: "steps", type: "number", min: 1, value: 1000 })),
    h("label", {}, "Image size ", h("input", { name: "image_size", type: "number", min: 4, placeholder: "auto" })),
    h("label", { class: "wide" }, "Other parameters (JSON) ",
      h("input", { name: "extra", placeholder: '{"lr_g": 0.0002, "assignment": "balanced"}' })),
    h("button", { type: "submit" }, "Start training"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      const [source, value] = String(data.get("dataset")).split(/:(.*)/s);
      const params = source === "builtin" ? { dataset: value } : { dataset_id: value };
      for (const name of ["k", "steps", "image_size"]) if (data.get(name)) params[name] = Number(data.get(name));
      if (String(data.get("extra")).trim()) Object.assign(params, JSON.parse(String(data.get("extra"))));
      const job = await postJSON("/v1/jobs", { kind: "train", params });
      status.replaceChildren(h("span", {}, "Started job ", h("a", { href: `#/jobs/${job.id}` }, short(job.id))));
      onStarted(job);
    } catch (error) {
      status.replaceChildren(errorBox(error instanceof SyntaxError ?
        { title: "Other parameters are not JSON", detail: error.message } : error));
    }
  });
  const file = h("input", { type: "file", name: "file", accept: ".zip,.tar,.tar.gz,.tgz", required: true });
  const uploadStatus = h("div", { class: "form-status" });
  const upload = h("form", { class: "upload-form" },
    h("label", {}, "Your images (.zip, .tar, .tar.gz) ", file),
    h("label", {}, "Name ", h("input", { name: "name", maxlength: 200 })),
    h("button", { type: "submit" }, "Upload"), uploadStatus);
  upload.addEventListener("submit", async (event) => {
    event.preventDefault();
    uploadStatus.replaceChildren("Uploading…");
    try {
      const dataset = await (await api("/v1/datasets", { method: "POST", body: new FormData(upload) })).json();
      await fillDatasets();
      select.value = `id:${dataset.id}`;
      uploadStatus.replaceChildren(`Uploaded ${dataset.name}: ${num(dataset.n_items)} images.`);
    } catch (error) {
      uploadStatus.replaceChildren(errorBox(error));
    }
  });
  return h("details", { class: "panel" }, h("summary", {}, "Start a training run"), form, upload);
}

export async function jobsView(view, ctx) {
  const list = h("div", { id: "jobs-list" }, h("p", { class: "muted" }, "Loading jobs…"));
  view.replaceChildren(h("h1", {}, "Jobs"));
  const refresh = async () => {
    const page = await getJSON("/v1/jobs?limit=50");
    page.items.forEach(record);
    const models = page.items.some((j) => j.params?.model_id) ? await modelIds() : null;
    list.replaceChildren(jobsTable(page.items, models),
      page.total > page.items.length ? h("p", { class: "muted" }, `Newest 50 of ${page.total} jobs.`) : "");
    return page.items.some((j) => ACTIVE.has(j.status));
  };
  let poller = null;
  view.append(await trainForm(() => poller?.wake()), list);
  await refresh();
  poller = ctx.every(2000, refresh);
}

function downloadButton(artifact) {
  return h("button", { type: "button", class: "link", onclick: async () => {
    const a = h("a", { href: await imageURL(artifact.links.self), download: artifact.filename });
    a.click();
  } }, `${artifact.filename} (${num(artifact.size_bytes)} bytes)`);
}

export async function jobView(view, ctx, jobId) {
  const body = h("div", {});
  view.replaceChildren(h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), body);
  let shown = "";
  const render = async () => {
    const job = await getJSON(`/v1/jobs/${jobId}`);
    record(job);
    const models = job.params?.model_id ? await modelIds() : null;
    // A finished job no longer changes: keep its page (and its pictures) as drawn.
    const state = `${job.status} ${job.progress?.step}`;
    if (state === shown && !ACTIVE.has(job.status)) return false;
    shown = state;
    const p = job.progress || {};
    const active = ACTIVE.has(job.status);
    const actions = h("div", { class: "actions" },
      active ? h("button", { type: "button", onclick: async () => { await postJSON(job.links.cancel); await render(); } },
                 job.cancel_requested ? "Cancelling…" : "Cancel") : "",
      job.model_id ? h("a", { class: "button", href: `#/models/${job.model_id}` }, "Open model")
        : job.params?.model_id ? modelLink(job, models) : "");
    const charts = job.kind === "train" ? h("div", { class: "charts" },
      lineChart(perMember(job.id, "d_loss"), { title: "critic loss" }),
      lineChart(perMember(job.id, "g_loss"), { title: "generator loss" }),
      lineChart(perMember(job.id, "wasserstein"), { title: "Wasserstein estimate" })) : "";
    const facts = h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, badge(job.status)),
      h("dt", {}, "Step"), h("dd", {}, `${num(p.step)} / ${num(p.total)}`),
      h("dt", {}, "ETA"), h("dd", {}, job.status === "running" ? eta(p.eta_s) : "–"),
      h("dt", {}, "Elapsed"), h("dd", {}, p.elapsed_s ? eta(p.elapsed_s) : "–"),
      h("dt", {}, "Attempt"), h("dd", {}, num(job.attempt)),
      h("dt", {}, "Created"), h("dd", {}, when(job.created_at)),
      h("dt", {}, "Finished"), h("dd", {}, when(job.finished_at)),
      p.tile_sizes ? [h("dt", {}, "Tile sizes"), h("dd", {}, p.tile_sizes.join(" · "))] : "");
    const parts = [
      h("h1", {}, `${job.kind} job `, h("code", {}, short(job.id))),
      progressBar(p.fraction, `${num(p.step)} of ${num(p.total)}`), actions,
      job.error ? errorBox(job.error) : "", h("div", { class: "job-summary" }, facts, charts),
      p.events && p.events.length ? [h("h2", {}, "Trainer notes"),
        h("ul", { class: "trainer-notes" }, p.events.map((e) => h("li", {}, e)))] : "",
      h("h2", {}, "Parameters"), h("pre", { class: "params" }, JSON.stringify(job.params, null, 2)),
    ];
    if (!active) {
      const artifacts = await allPages(`/v1/artifacts${query({ job_id: job.id, limit: 100 })}`);
      if (artifacts.length) {
        parts.push(h("h2", {}, "Artifacts"),
                   h("ul", { class: "artifacts" }, artifacts.map((a) => h("li", {}, a.kind, " · ", downloadButton(a),
                     Object.keys(a.meta || {}).length ? numbersDetails(a.meta) : ""))),
                   h("div", { class: "job-pictures" }, artifacts.filter((a) => a.media_type === "image/png")
                     .map((a) => picture(a.kind, a.links.self, a.member === null ? "all members" : `member ${a.member}`))));
      }
    }
    body.replaceChildren(...parts.flat());
    return active;
  };
  await render();
  ctx.every(1500, render);
}
