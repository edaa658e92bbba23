// The deploy / edit form: fields for the common settings, an advanced YAML part for the
// rest (the form wins where both set a field), or the whole function as one JSON/YAML text.
// The API's 422 issues are shown next to their field; the ones of no field at the top.
import { api, el } from "./common.js";
import { FIELDS, fieldFor, fromSpec, merge, parseValue, split } from "./fields.js";

// js-yaml comes from npm (make setup); without it the advanced part takes JSON only
const yaml = await import("/vendor/js-yaml/dist/js-yaml.mjs").then((m) => m.default ?? m, () => null);
const parseText = (text) => (text.trim() === "" ? {} : yaml ? yaml.load(text) : JSON.parse(text));
const dumpText = (value) => (!Object.keys(value).length ? "" : yaml ? yaml.dump(value) : JSON.stringify(value, null, 2));

const GROUPS = [
  ["function", "Function"],
  ["runs", "Runs"],
  ["route", "Route (the first of routes)"],
  ["scaling", "Scaling"],
  ["limits", "Limits"],
];
const idOf = (path) => `f-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;

function input(field) {
  const id = idOf(field.path);
  const attrs = { id, name: field.path, "aria-describedby": `${id}-error` };
  if (field.kind === "choice") return el("select", attrs, ...field.choices.map(([v, label]) => el("option", { value: v }, label)));
  const numeric = field.kind === "number" ? { inputmode: "decimal" } : {};
  return el("input", { ...attrs, ...numeric, type: "text", placeholder: `e.g. ${field.placeholder}`, autocomplete: "off", spellcheck: "false" });
}

function fieldBox(field) {
  const id = idOf(field.path);
  return el("div", { class: "field", "data-field": field.path, "data-runs": field.runs },
    el("label", { for: id }, field.label), input(field),
    el("p", { class: "field-error", id: `${id}-error`, "aria-live": "polite" }));
}

function runsChoice(onchange) {
  const radio = (value, label) => el("label", { class: "inline" },
    el("input", { type: "radio", name: "runs", value, id: `runs-${value}`, onchange }), ` ${label}`);
  return el("div", { class: "field wide", role: "radiogroup", "aria-label": "the function runs" },
    radio("handler", "a Python handler"), radio("image", "an image + command"));
}

function modeChoice(onchange) {
  const radio = (value, label) => el("label", { class: "inline" },
    el("input", { type: "radio", name: "mode", value, id: `mode-${value}`, onchange }), ` ${label}`);
  return el("div", { class: "modes", role: "radiogroup", "aria-label": "edit as" }, radio("form", "Form"), radio("text", "JSON / YAML text"));
}

function wizardParts() {
  const boxes = new Map(FIELDS.map((f) => [f.path, fieldBox(f)]));
  const advancedId = "f-advanced";
  const advanced = el("textarea", { id: advancedId, name: "advanced", rows: 6, "aria-describedby": `${advancedId}-error`, spellcheck: "false" });
  const advancedBox = el("div", { class: "field wide", "data-field": "(advanced)" },
    el("label", { for: advancedId }, "advanced (YAML): every other field of the function (env, resources, schedule, more routes…)"),
    advanced, el("p", { class: "field-error", id: `${advancedId}-error`, "aria-live": "polite" }));
  return { boxes, advanced, advancedBox };
}

/** The form that deploys (name null) or edits a function: source is its mapping as deployed,
 * spec its resolved summary (used when the mapping is not known). */
export function deployForm(name, source, spec) {
  const issues = el("ul", { class: "issues", id: "deploy-issues", "aria-live": "polite" });
  const text = el("textarea", { name: "function", rows: 12, id: "deploy-text", "aria-label": "the function as JSON or YAML", spellcheck: "false" });
  const { boxes, advanced, advancedBox } = wizardParts();
  const runs = runsChoice(() => showRuns());
  const wizard = el("div", { id: "wizard" },
    ...GROUPS.map(([group, legend]) => el("fieldset", { class: `group ${group}` }, el("legend", {}, legend),
      ...(group === "runs" ? [runs] : []),
      ...FIELDS.filter((f) => f.group === group).map((f) => boxes.get(f.path)))),
    el("fieldset", { class: "group advanced" }, el("legend", {}, "Advanced"), advancedBox));
  const form = el("form", { class: "panel", id: "deploy-form", novalidate: "" });
  const control = (path) => form.elements.namedItem(path);
  const runsValue = () => (form.querySelector("input[name=runs]:checked") || {}).value || "handler";
  const showRuns = () => {
    for (const box of boxes.values()) if (box.dataset.runs) box.hidden = box.dataset.runs !== runsValue();
  };
  const visible = () => FIELDS.filter((f) => !f.runs || f.runs === runsValue());

  const fill = (mapping) => {
    const { values, rest } = split(mapping);
    for (const f of FIELDS) control(f.path).value = values[f.path] ?? "";
    form.querySelector(`#runs-${values.image !== undefined || values.command !== undefined ? "image" : "handler"}`).checked = true;
    advanced.value = dumpText(rest);
    showRuns();
  };
  const formValues = () => {
    const values = {};
    for (const f of visible()) {
      const value = parseValue(f, control(f.path).value);
      if (value !== undefined) values[f.path] = value;
    }
    return values;
  };
  const clear = () => {
    issues.replaceChildren();
    for (const box of [...boxes.values(), advancedBox]) {
      box.classList.remove("invalid");
      box.querySelector(".field-error").replaceChildren();
      box.querySelector("input, select, textarea").removeAttribute("aria-invalid");
    }
  };
  const markField = (box, content, path) => {
    box.classList.add("invalid");
    box.querySelector("input:not([type=radio]), select, textarea").setAttribute("aria-invalid", "true");
    box.querySelector(".field-error").append(el("span", { "data-path": path }, ...content));
  };
  // the function from the form; null (and the reason next to the advanced part) when it does not parse
  const fromForm = () => {
    let rest;
    try {
      rest = parseText(advanced.value);
    } catch (e) {
      markField(advancedBox, [`not valid YAML: ${e.message.split("\n")[0]}`], "(advanced)");
      return null;
    }
    if (rest !== null && (typeof rest !== "object" || Array.isArray(rest))) {
      markField(advancedBox, ["must be a mapping of fields (key: value lines)"], "(advanced)");
      return null;
    }
    return merge(rest, formValues());
  };
  const isForm = () => form.querySelector("#mode-form").checked;

  const showIssues = (found) => {
    const paths = isForm() ? visible().map((f) => f.path) : [];
    for (const i of found) {
      const words = [`${i.problem}`, i.hint ? ` — fix: ${i.hint}` : ""];
      const at = fieldFor(i.path, paths);
      if (at !== null) markField(boxes.get(at), words, i.path);
      else issues.append(el("li", { "data-path": i.path }, el("code", {}, i.path || "(file)"), ": ", ...words));
    }
    const first = form.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  };
  const send = async (method, path, withBody) => {
    clear();
    let body;
    if (withBody) {
      body = isForm() ? fromForm() : text.value;
      if (body === null) return;
    }
    try {
      const r = await api(method, path, body, isForm() ? "application/json" : "application/yaml");
      issues.append(el("li", { class: "muted" }, (r.changes || []).join(", ") || "done"));
      if (method !== "PUT") location.hash = method === "DELETE" ? "#/" : `#/f/${encodeURIComponent(r.name)}`;
    } catch (e) {
      const found = (e.data && e.data.issues) || [];
      if (!found.length) issues.append(el("li", {}, e.message));
      showIssues(found);
    }
  };
  const switchMode = (event) => {
    clear();
    if (event.target.value === "text") {
      const mapping = fromForm();
      if (mapping === null) {
        form.querySelector("#mode-form").checked = true;
        return;
      }
      text.value = JSON.stringify(mapping, null, 2);
    } else {
      try {
        fill(parseText(text.value));
      } catch (e) {
        issues.append(el("li", {}, `the text is not valid JSON or YAML: ${e.message.split("\n")[0]}`));
        form.querySelector("#mode-text").checked = true;
        return;
      }
    }
    wizard.hidden = !isForm();
    text.hidden = isForm();
  };

  const self = `/api/v1/functions/${encodeURIComponent(name)}`;
  const primary = name ? () => send("PUT", self, true) : () => send("POST", "/api/v1/functions", true);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    primary();
  });
  form.append(modeChoice(switchMode), issues, wizard, text,
    el("div", { class: "row" },
      name ? el("button", { type: "submit", id: "update" }, "Update") : el("button", { type: "submit", id: "deploy" }, "Deploy"),
      name ? el("button", { type: "button", class: "danger", id: "delete", onclick: () => confirm(`Delete ${name}?`) && send("DELETE", self, false) }, "Delete") : null));
  form.querySelector("#mode-form").checked = true;
  text.hidden = true;
  if (name && !source && spec) {
    issues.append(el("li", { class: "muted" }, "filled in from the resolved settings (defaults included): the entry it was deployed from is not known"));
    fill(fromSpec(name, spec));
  } else fill(source || {});
  return form;
}
