// One model: the ensemble's cross-member matrix and training curves, then one column per
// member with its tile share, the pictures the API renders on request, and the artifacts of
// visualisation jobs (activation maximisation with and without the prior, principal
// directions, ...) with their numbers. Each column can start a visualisation job of its own.

import { allPages, api, getJSON, imageURL, postJSON, query } from "./api.js";
import { memberColour } from "./charts.js";
import { badge, errorBox, h, num, percent, progressBar, short, when } from "./dom.js";

const ACTIVE = new Set(["queued", "running"]);
// Pictures rendered on request by /v1/models/{id}/members/{k}/…png, in column order.
const IMAGE_PICTURES = [
  ["samples", "Samples", { n: 64 }],
  ["medoid", "Medoid", { n: 256 }],
  ["real-tile", "Real images of its tile", { n: 8 }],
  ["frozen-latent", "Frozen latent", {}],
  ["traversal", "Latent traversal", {}],
];
const POINT_PICTURES = [["samples", "Samples", { n: 500 }]];
// What a member's column can start, with the options it suggests (editable before starting):
// each the visualisation's own default for one member, or {} where that default depends on
// the model (samples: 16 of a member, of points or of images; the API refuses what is out of
// the visualisation's bounds at submission).
const MEMBER_VISUALISATIONS = {
  images: {
    "activation-max": { steps: 200 },
    "principal-directions": { components: 5 },
    "cross-member": { n: 64 },
    "training-curves": {},
    medoid: { n: 256 },
    "real-tile": { n: 8 },
  },
  points: { "cross-member": { n: 64 }, "training-curves": {}, samples: {} },
};
const ENSEMBLE = [["cross-member", "Cross-member matrix", { n: 64 }], ["training-curves", "Training curves", {}]];
const ENSEMBLE_VISUALISATIONS = Object.fromEntries(ENSEMBLE.map(([what, , options]) => [what, options]));

// Pictures are shown at least this fraction of their size, so their 12 px labels stay 9 px or
// more; one wider than its column at that size scrolls sideways inside its own frame.
const MIN_SCALE = 0.75;
const MAX_ENLARGED = 320; // px: small pictures (16 px samples) may grow to this, others by a quarter

// A picture as the page shows it, scaled to its column; a click opens it at full size.
// `alt` says what it shows (member, visualisation, numbers) for a reader who cannot see it.
export function picture(label, path, note, alt = label) {
  const img = h("img", { alt, class: "loading" });
  const caption = h("figcaption", {}, h("span", { class: "label" }, label), note ? h("small", {}, note) : "");
  const open = h("button", { type: "button", class: "zoom", title: "Open at full size",
                             "aria-label": `Open at full size: ${alt}` }, img);
  const frame = h("div", { class: "frame" }, open);
  const figure = h("figure", { class: "pic" }, caption, frame);
  open.addEventListener("click", () => fullSize(img));
  const wide = h("p", { class: "muted small wide-note", hidden: true },
                 "Wider than its column: scroll it sideways, or click to open it.");
  figure.append(wide);
  img.addEventListener("load", () => {
    img.style.minWidth = `${Math.ceil(img.naturalWidth * MIN_SCALE)}px`;
    // A small labelled picture blown up to a wide column has giant, blurred text: cap it.
    img.style.maxWidth = `${Math.max(1.25 * img.naturalWidth, MAX_ENLARGED)}px`;
    requestAnimationFrame(() => {
      wide.hidden = frame.scrollWidth <= frame.clientWidth + 1;
      // Nearest-neighbour keeps enlarged pixels sharp; shrunk or enlarged a little, it would
      // drop or double strokes of the labels.
      if (img.clientWidth < 1.5 * img.naturalWidth) img.style.imageRendering = "auto";
    });
  });
  imageURL(path).then((url) => {
    img.src = url;
    img.classList.remove("loading");
  }).catch((error) => frame.replaceWith(errorBox(error)));
  return figure;
}

function fullSize(img) {
  if (!img.src) return;
  const dialog = h("dialog", { class: "full-picture", "aria-label": img.alt },
    h("form", { method: "dialog" }, h("button", { type: "submit", class: "close" }, "Close")),
    h("img", { src: img.src, alt: img.alt }));
  dialog.addEventListener("close", () => dialog.remove());
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  document.body.append(dialog);
  dialog.showModal();
}

// --- numbers beside each visualisation ---------------------------------------------------

function table(headers, rows) {
  return h("table", { class: "numbers" }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
           h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell, i) => h(i ? "td" : "th", {}, cell))))));
}

function activationNumbers(numbers, member) {
  const entry = (numbers.members || {})[String(member)];
  const trained = entry?.trained;
  if (!trained) return numbersDetails(numbers);
  const label = { pixel: "pixels (no prior)", regularised: "regularised (no prior)", prior: "learned prior" };
  const objective = numbers.objective || {};
  const best = trained.best_control;
  const realism = (r) => (r?.judge?.nn_ratio === undefined ? "–" : num(r.judge.nn_ratio));
  return h("div", {},
    h("p", { class: "muted" }, `${objective.name || objective.layer || "objective"} · ${numbers.steps} steps · `
      + `${num(entry.tile_count)} real images in the tile; best control: ${(best || "–").replaceAll("_", " ")} `
      + `(z ${num((trained.controls_z || {})[best], 2)})`),
    table(["method", "start", "reached", "z", "over best control", "re-init critic z", "realism"],
      (numbers.methods || []).map((m) => {
        const r = trained[m] || {};
        return [label[m] || m, num(r.start), num(r.reached), num(r.z, 2), num(r.margin_over_best_control, 2)
          + (r.beats_controls ? " ✓" : ""), num(entry.reinit?.[m]?.z, 2), realism(r)];
      })),
    h("p", { class: "muted small" }, "z: the objective in this critic's tile spreads from its tile mean. over best "
      + "control: z above the best of the controls (best real image, tile mean, blanks, noise); ✓ where it beats "
      + "them, otherwise the picture shows nothing the critic specifically learnt. re-init critic: the same search "
      + "on a re-initialised critic. realism: distance to the nearest real image in an independent judge's "
      + "features over the real-to-real distance (1 is as close as real images are; lower is more realistic); "
      + "– where no judge has been trained for this data yet."));
}

function directionsNumbers(numbers) {
  return h("div", {},
    table(["", "change per sd"], [
      ["principal directions (mean)", num(numbers.mean_change_principal, 4)],
      ["random directions (mean)", num(numbers.mean_change_random, 4)],
      ["principal ÷ random", num(numbers.principal_over_random)],
    ]),
    table(["PC", "explained variance", "change per sd"], (numbers.principal || [])
      .map((pc) => [`PC${pc.component + 1}`, percent(pc.explained_variance), num(pc.change_per_unit, 4)])));
}

function crossMemberNumbers(numbers) {
  // Older artifacts name these fields differently; both are read.
  const spreads = numbers.relative_to_own_real_tile_in_spreads;
  const matrix = spreads || numbers.relative_to_own_real_tile || [];
  const own = numbers.critic_ranks_own_generator_first || numbers.own_critic_ranks_own_generator_highest || [];
  const share = numbers.share_of_critics_ranking_own_generator_first ?? numbers.share_own_highest;
  return h("div", {},
    h("p", {}, `Critic D_j ranks its own generator G_j first for ${own.filter(Boolean).length} of ${own.length} `
      + `members (${percent(share, 0)}).`),
    (numbers.warnings || []).map((w) => h("p", { class: "error-text small" }, w)),
    table([spreads ? "D \\ G (in tile spreads)" : "D \\ G", ...matrix.map((_, j) => memberTag(j, "G"))],
          matrix.map((row, i) => [memberTag(i, "D"), ...row.map((v) => num(v, 2))])));
}

// "G3" with member 3's colour chip, as in the member columns and the charts.
function memberTag(j, prefix) {
  const chip = h("span", { class: "chip", "aria-hidden": "true" });
  chip.style.background = memberColour(j);
  return h("span", { class: "member-tag" }, chip, `${prefix}${j}`);
}

function curvesNumbers(numbers) {
  const members = Object.entries(numbers.members || {});
  if (!members.length) return numbersDetails(numbers);
  const keys = Object.keys(members[0][1]);
  return h("div", {}, h("p", { class: "muted" }, `Last of ${num(numbers.logged_steps)} logged steps (step `
    + `${num(numbers.last_step)}):`), table(["member", ...keys], members.map(([k, v]) => [memberTag(Number(k), ""), ...keys.map((key) => num(v[key]))])));
}

export function numbersDetails(numbers) {
  return h("details", { class: "raw" }, h("summary", {}, "numbers"), h("pre", {}, JSON.stringify(numbers, null, 1)));
}

function numbersFor(artifact) {
  const numbers = (artifact.meta || {}).numbers || {};
  switch (artifact.kind) {
    case "activation-max": return activationNumbers(numbers, artifact.member);
    case "principal-directions": return directionsNumbers(numbers);
    case "cross-member": return crossMemberNumbers(numbers);
    case "training-curves": return curvesNumbers(numbers);
    default: return numbersDetails(numbers);
  }
}

function artifactFigure(artifact) {
  const meta = artifact.meta || {};
  const options = meta.options && Object.keys(meta.options).length ? JSON.stringify(meta.options) : "";
  const who = artifact.member === null || artifact.member === undefined ? "all members" : `member ${artifact.member}`;
  const figure = picture(artifact.kind, artifact.links.self, `seed ${meta.seed ?? 0} ${options} · ${when(artifact.created_at)}`,
                         meta.title || `${artifact.kind} of ${who}, seed ${meta.seed ?? 0} ${options}`);
  figure.classList.add("artifact");
  figure.dataset.artifactId = artifact.id;
  figure.dataset.kind = artifact.kind;
  figure.append(numbersFor(artifact));
  return figure;
}

// --- starting visualisation jobs ---------------------------------------------------------

function priorOptions(priors) {
  return [h("option", { value: "" }, "without the prior"), priors.map((p) => h("option", { value: p.id },
    `with prior ${short(p.id)}` + (p.meta?.metrics?.heldout_psnr ? ` (PSNR ${num(p.meta.metrics.heldout_psnr, 1)})` : "")))];
}

function visualiseForm(model, member, choices, priors, onStarted) {
  const what = h("select", { name: "what" }, Object.keys(choices).map((w) => h("option", { value: w }, w)));
  const options = h("input", { name: "options", value: JSON.stringify(choices[what.value]), spellcheck: "false" });
  const prior = h("select", { name: "prior" }, priorOptions(priors));
  const priorLabel = h("label", {}, "Prior ", prior);
  // Offered only for activation max, and only once a prior for images of this size exists.
  const sync = () => { priorLabel.hidden = what.value !== "activation-max" || prior.options.length < 2; };
  what.addEventListener("change", () => { options.value = JSON.stringify(choices[what.value]); sync(); });
  prior.addEventListener("priors", (event) => { prior.replaceChildren(...priorOptions(event.detail).flat()); sync(); });
  sync();
  const status = h("div", { class: "form-status" });
  const form = h("form", { class: "visualise-form" },
    h("label", {}, "Visualise ", what), h("label", {}, "Options ", options), priorLabel,
    h("button", { type: "submit" }, "Start"), status);
  submitsJob(form, status, onStarted, () => {
    const params = { model_id: model.id, what: what.value, options: JSON.parse(options.value || "{}") };
    if (member !== null) params.member = member;
    if (what.value === "activation-max" && prior.value) {
      params.prior_id = prior.value;
      params.options.methods ??= ["pixel", "regularised", "prior"];
    }
    return { kind: "visualise", params };
  });
  return form;
}

// On submit: POST the job that request() describes, then hand it to onStarted; a refusal, or
// options that are not JSON, is shown in status instead.
function submitsJob(form, status, onStarted, request) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const job = await postJSON("/v1/jobs", request());
      status.replaceChildren();
      onStarted(job);
    } catch (error) {
      status.replaceChildren(errorBox(error instanceof SyntaxError ?
        { title: "Options are not JSON", detail: error.message } : error));
    }
  });
}

function jobLine(job) {
  const p = job.progress || {};
  return h("li", { class: "job-line", dataset: { jobId: job.id, status: job.status } },
    h("a", { href: `#/jobs/${job.id}` }, `${job.kind === "visualise" ? job.params.what : "image prior"} ${short(job.id)}`),
    " ", badge(job.status),
    ACTIVE.has(job.status) ? progressBar(p.fraction) : "",
    job.error ? h("small", { class: "error-text" }, ` ${job.error.title}: ${job.error.detail || ""}`) : "");
}

// A learned image prior on the data this model was trained on, for activation max through it.
function priorForm(model, trainJob, onStarted) {
  const source = trainJob.params.dataset_id ? { dataset_id: trainJob.params.dataset_id } : { dataset: trainJob.params.dataset };
  const options = h("input", { name: "options", value: JSON.stringify({ steps: 2000, holdout: 500 }), spellcheck: "false" });
  const status = h("div", { class: "form-status" });
  const form = h("form", { class: "prior-form" },
    h("label", {}, "Learn an image prior on this model's data (options) ", options),
    h("button", { type: "submit" }, "Train prior"), status);
  submitsJob(form, status, onStarted, () => ({ kind: "train_prior", params: {
    ...source, image_size: model.item_shape[model.item_shape.length - 1], ...JSON.parse(options.value || "{}") } }));
  return form;
}

// Deleting frees the owner's storage: the checkpoint and every picture made from the model.
// The API refuses (409, naming them) while unfinished jobs use it; the refusal is shown here.
function deleteForm(model) {
  const status = h("div", { class: "form-status" });
  const form = h("form", { class: "delete-model" },
    h("button", { type: "submit", class: "danger" }, "Delete model"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!confirm(`Delete model ${short(model.id)}, its checkpoint and every picture made from it?`)) return;
    try {
      await api(`/v1/models/${model.id}`, { method: "DELETE" });
      location.hash = "#/models";
    } catch (error) {
      status.replaceChildren(error.status === 409 && error.problem.blocking ? refusal(error.problem.blocking) : errorBox(error));
    }
  });
  return form;
}

// The jobs that stop a delete, each linked, with a Cancel button while it is unfinished.
function refusal(jobIds) {
  const line = (id) => {
    const cancel = h("button", { type: "button", class: "link" }, "Cancel");
    cancel.addEventListener("click", async () => {
      try {
        const job = await postJSON(`/v1/jobs/${id}/cancel`);
        cancel.replaceWith(h("span", { class: "muted" }, job.status === "cancelled" ? "cancelled" : "cancelling…"));
      } catch (error) {
        cancel.replaceWith(errorBox(error));
      }
    });
    return h("li", { dataset: { jobId: id } }, h("a", { href: `#/jobs/${id}` }, `job ${short(id)}`), " · ", cancel);
  };
  return h("div", { class: "error", role: "alert" },
    h("strong", {}, "Not deleted yet: "), `${jobIds.length === 1 ? "this job still uses" : "these jobs still use"} `
      + "the model. Cancel them or let them finish, then delete again.",
    h("ul", { class: "blocking" }, jobIds.map(line)));
}

// What the model was trained on, in words: "2-D points" or "1×16×16 images".
const dataWords = (model) => (model.dataset_kind === "points" ? `${model.item_shape[0]}-D points`
  : `${model.item_shape.join("×")} images`);

// The architecture the run was built with (the spec), not the setting that picked it ("auto").
function architecture(model) {
  const spec = model.spec || {};
  const how = model.config.arch === "auto" ? " (picked by data shape)" : "";
  const sizes = [spec.width ? `width ${spec.width}` : "", spec.latent_dim ? `latent ${spec.latent_dim}` : ""]
    .filter(Boolean).join(", ");
  return `${spec.arch ?? model.config.arch ?? "–"}${how}${sizes ? ` · ${sizes}` : ""}`;
}

// The member's end-of-training health checks (kgan_core.health): a badge naming the flagged
// checks, or "healthy"; every check's number and threshold on hover.
function healthLine(health) {
  if (!health) return h("p", { class: "health muted" }, "Health: not measured for this model");
  const flags = health.flags || [];
  const title = Object.entries(health.checks || {}).map(([name, check]) =>
    `${name}: ${num(check.value)} (threshold ${num(check.threshold)})${check.flagged ? " — flagged" : ""}`
    + `\n  ${check.detail}`).join("\n");
  return h("p", { class: "health", dataset: { flags: flags.join(" ") }, title },
    "Health: ", h("span", { class: `badge ${flags.length ? "failed" : "succeeded"}` },
      flags.length ? flags.map((f) => f.replaceAll("_", " ")).join(", ") : "healthy"));
}

// --- the page ----------------------------------------------------------------------------

export async function modelView(view, ctx, modelId) {
  const [model, artifacts, allPriors] = await Promise.all([
    getJSON(`/v1/models/${modelId}`).catch((error) => {
      if (error.status !== 404) throw error;
      throw { title: "No such model", detail: `Model ${short(modelId)} was deleted (with its checkpoint and pictures), `
        + "or never existed. The jobs that made or used it are still listed under Jobs." };
    }),
    allPages(`/v1/artifacts${query({ model_id: modelId, limit: 100 })}`),
    allPages(`/v1/artifacts${query({ kind: "prior", limit: 100 })}`),
  ]);
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  const fits = (p) => !p.meta?.item_shape || same(p.meta.item_shape, model.item_shape);
  const priors = allPriors.filter(fits);
  const trainJob = await getJSON(`/v1/jobs/${model.job_id}`);
  const launched = new Map(); // job id -> job, for the visualisation jobs started from this page
  const pictures = model.dataset_kind === "images" ? IMAGE_PICTURES : POINT_PICTURES;

  // Newest first; a slot per (member, kind) holds that kind's artifacts.
  // The training job's own pictures duplicate those drawn on request above them, so only
  // visualisation jobs' pictures are listed (their raw .npy arrays are downloads on the job's page).
  const byMember = (member) => artifacts.filter((a) => a.member === member && a.job_id !== model.job_id
                                                  && a.media_type === "image/png")
    .sort((a, b) => b.created_at.localeCompare(a.created_at));

  const jobLists = new Map(); // member (or "ensemble") -> <ul>
  const artifactSlots = new Map(); // member (or "ensemble") -> element

  function renderArtifacts(member) {
    const slot = artifactSlots.get(member ?? "ensemble");
    const mine = byMember(member);
    if (member === null) {
      slot.replaceChildren(...ENSEMBLE.map(([kind, title]) => {
        const latest = mine.find((a) => a.kind === kind);
        return h("div", { class: "ensemble-item" }, h("h3", {}, title),
                 latest ? artifactFigure(latest) : h("p", { class: "muted" }, `No ${title.toLowerCase()} yet: start one below.`));
      }));
    } else {
      slot.replaceChildren(...(mine.length ? mine.map(artifactFigure)
        : [h("p", { class: "muted" }, "No visualisation jobs for this member yet.")]));
    }
  }

  function started(member) {
    return (job) => {
      launched.set(job.id, job);
      jobLists.get(member ?? "ensemble").prepend(jobLine(job));
      poller.wake();
    };
  }

  const summary = h("dl", { class: "facts" },
    h("dt", {}, "Data"), h("dd", {}, `${dataWords(model)}` + (trainJob.params.dataset ? ` (${trainJob.params.dataset})` : "")),
    h("dt", {}, "Members"), h("dd", {}, num(model.k)),
    h("dt", {}, "Step"), h("dd", {}, num(model.step)),
    h("dt", {}, "Architecture"), h("dd", {}, architecture(model)),
    h("dt", {}, "Assignment"), h("dd", {}, model.config.assignment ?? "–"),
    h("dt", {}, "Trained by"), h("dd", {}, h("a", { href: `#/jobs/${model.job_id}` }, short(model.job_id))),
    h("dt", {}, "Created"), h("dd", {}, when(model.created_at)),
    Object.entries(model.metrics || {}).filter(([, v]) => typeof v !== "object")
      .map(([name, v]) => [h("dt", {}, name.replaceAll("_", " ")), h("dd", {}, num(v))]));

  const ensembleSlot = h("div", { class: "ensemble-items" });
  artifactSlots.set("ensemble", ensembleSlot);
  const ensembleJobs = h("ul", { class: "jobs-started" });
  jobLists.set("ensemble", ensembleJobs);
  const ensembleForm = visualiseForm(model, null, ENSEMBLE_VISUALISATIONS, [], started(null));
  const memberChoices = MEMBER_VISUALISATIONS[model.dataset_kind] || MEMBER_VISUALISATIONS.points;

  const columns = model.members.map((member) => {
    const artifactsSlot = h("div", { class: "member-artifacts" });
    artifactSlots.set(member.k, artifactsSlot);
    const jobs = h("ul", { class: "jobs-started" });
    jobLists.set(member.k, jobs);
    const share = h("div", { class: "share" },
      h("span", { class: "share-value" }, percent(member.tile_share)),
      h("span", { class: "muted" }, ` of the data · ${num(member.tile_size)} items`),
      progressBar(member.tile_share, `member ${member.k}'s tile share`));
    share.querySelector(".fill").style.background = memberColour(member.k); // its colour, as in every picture
    const header = h("header", {}, h("h2", {}, h("span", { class: "chip" }), `Member ${member.k}`), share,
      healthLine(member.health));
    header.querySelector(".chip").style.background = memberColour(member.k);
    return h("section", { class: "member", dataset: { member: member.k }, "aria-label": `member ${member.k}` },
      header,
      pictures.filter(([name]) => member.links[name]).map(([name, label, params]) =>
        picture(label, member.links[name] + query(params), params.n ? `n=${params.n}` : "",
                `Member ${member.k} of ${model.k}, ${label.toLowerCase()}${params.n ? ` (${params.n})` : ""}: `
                + `${percent(member.tile_share)} of the data, step ${num(model.step)}`)),
      h("h3", {}, "Visualisation jobs"), artifactsSlot,
      visualiseForm(model, member.k, memberChoices, priors, started(member.k)), jobs);
  });
  const grid = h("div", { class: "members", tabindex: 0, role: "region", "aria-label": "members side by side" }, columns);
  grid.style.setProperty("--k", model.k);
  const scrollHint = h("p", { class: "muted scroll-hint", hidden: true }, `Scroll sideways for all ${model.k} members →`);
  const showHint = () => { scrollHint.hidden = grid.scrollWidth <= grid.clientWidth + 1; };
  new ResizeObserver(showHint).observe(grid);

  view.replaceChildren(
    h("p", {}, h("a", { href: "#/models" }, "← All models")),
    h("h1", {}, "Model ", h("code", {}, short(model.id))), summary, deleteForm(model),
    h("section", { class: "ensemble panel" }, h("h2", {}, "The ensemble"), ensembleSlot, ensembleForm,
      model.dataset_kind === "images" ? priorForm(model, trainJob, started(null)) : "", ensembleJobs),
    h("h2", {}, `The ${model.k} members, side by side`), scrollHint, grid);
  renderArtifacts(null);
  for (const member of model.members) renderArtifacts(member.k);

  const poller = ctx.every(1000, async () => {
    const active = [...launched.values()].filter((j) => ACTIVE.has(j.status));
    if (!active.length) return false;
    for (const old of active) {
      const job = await getJSON(`/v1/jobs/${old.id}`);
      launched.set(job.id, job);
      // A prior job's params also have a `member` (the critic it may encode with): not a column.
      const member = job.kind === "visualise" ? job.params.member ?? null : null;
      const line = jobLists.get(member ?? "ensemble").querySelector(`[data-job-id="${job.id}"]`);
      line?.replaceWith(jobLine(job));
      if (job.status === "succeeded") {
        const made = await allPages(`/v1/artifacts${query({ job_id: job.id, limit: 100 })}`);
        if (job.kind === "train_prior") {
          priors.push(...made.filter((a) => a.kind === "prior" && fits(a)));
          for (const select of view.querySelectorAll("select[name=prior]")) {
            select.dispatchEvent(new CustomEvent("priors", { detail: priors }));
          }
        } else {
          artifacts.push(...made);
          renderArtifacts(member);
        }
      }
    }
    return true;
  });
}

export async function modelsView(view) {
  const models = (await getJSON("/v1/models?limit=100")).items;
  if (!models.length) {
    view.replaceChildren(h("h1", {}, "Models"), h("p", { class: "muted" }, "No models yet: a succeeded training job makes one."));
    return;
  }
  const rows = models.map((m) => h("tr", {},
    h("td", {}, h("a", { href: `#/models/${m.id}` }, short(m.id))),
    h("td", {}, dataWords(m)), h("td", {}, num(m.k)), h("td", {}, num(m.step)),
    h("td", {}, m.tile_shares.map((s) => percent(s, 0)).join(" · ")), h("td", {}, when(m.created_at))));
  view.replaceChildren(h("h1", {}, "Models"), h("div", { class: "table-scroll", tabindex: 0, role: "region",
                                                        "aria-label": "models" }, h("table", { class: "jobs" },
    h("thead", {}, h("tr", {}, ["Model", "Data", "k", "Step", "Tile shares", "Created"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows))));
}
