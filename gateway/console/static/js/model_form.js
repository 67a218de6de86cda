// The generate form for one model: only the fields the model takes, with its ranges and
// defaults (its rules from GET /api/v1/models), and the request body read back from it.

import { byId, el, fill } from "./elements.js";

const NUMBERS = ["n", "steps", "scale", "seed"];

function describeText(rule) {
  if (!rule) return "";
  if (rule.max_words) return `up to ${rule.max_words} words (longer is cut)`;
  if (rule.max_chars) return `up to ${rule.max_chars} characters (longer is cut)`;
  return "";
}

function describeSize(size) {
  if (size.choices) return "";
  const pixels = size.max_pixels ? `, at most ${size.max_pixels} pixels` : "";
  return `width*height, each side ${size.min_side}–${size.max_side}${pixels}`;
}

function renderSize(size) {
  const box = byId("size-box");
  const control = size.choices
    ? el(
        "select",
        { id: "size" },
        size.choices.map((choice) =>
          el("option", { value: choice, selected: choice === size.default }, choice),
        ),
      )
    : el("input", {
        id: "size",
        type: "text",
        value: size.default,
        pattern: "\\d+\\*\\d+",
        spellcheck: false,
      });
  fill(box, el("label", { for: "size" }, "Size"), control);
  byId("size-hint").textContent = describeSize(size);
}

function renderNumber(name, rule) {
  const box = byId(`${name}-box`);
  box.hidden = !rule;
  const input = byId(name);
  if (!rule) return;
  input.min = rule.min;
  input.max = rule.max;
  input.step = name === "scale" ? "any" : "1";
  input.value = rule.default ?? "";
  input.placeholder = name === "seed" ? "random" : `${rule.min}–${rule.max}`;
}

function fieldControl(name, rule) {
  const id = `field-${name}`;
  if (rule.type === "bool") {
    const box = el("input", { id, type: "checkbox", checked: Boolean(rule.default) });
    return el("div", { className: "check" }, box, el("label", { for: id }, name));
  }
  let control;
  if (rule.type === "choice") {
    control = el(
      "select",
      { id },
      el("option", { value: "" }, rule.default === undefined ? "(not sent)" : "(default)"),
      rule.choices.map((choice) => el("option", { value: choice }, choice)),
    );
  } else if (rule.type === "integer" || rule.type === "number") {
    control = el("input", {
      id,
      type: "number",
      min: rule.min ?? "",
      max: rule.max ?? "",
      step: rule.type === "integer" ? "1" : "any",
      placeholder: rule.default !== undefined ? `default ${rule.default}` : "",
    });
  } else {
    control = el("input", {
      id,
      type: rule.type === "url" ? "url" : "text",
      maxLength: rule.max_chars || 2048,
    });
  }
  return el("div", { className: "field" }, el("label", { for: id }, name), control);
}

/** Show the form for `spec`, one of GET /api/v1/models' entries. */
export function renderModelFields(spec) {
  const notes = [spec.runs === "upstream" ? "made by DashScope" : "made on a local GPU pool"];
  if (spec.runs === "both") notes[0] = "made locally, by DashScope when the queue is long";
  const prompt = describeText(spec.prompt);
  if (prompt) notes.push(`prompt ${prompt}`);
  byId("model-note").textContent = notes.join(" · ");
  byId("negative-prompt-box").hidden = !spec.negative_prompt;
  renderSize(spec.size);
  for (const name of NUMBERS) renderNumber(name, spec[name]);
  const fields = Object.entries(spec.fields || {}).filter(([, rule]) => rule.type);
  fill(byId("extra-fields"), fields.map(([name, rule]) => fieldControl(name, rule)));
}

function numberOf(id) {
  const text = byId(id).value.trim();
  return text === "" ? undefined : Number(text);
}

function fieldValue(name, rule) {
  const control = byId(`field-${name}`);
  if (rule.type === "bool") {
    return rule.default === undefined && !control.checked ? undefined : control.checked;
  }
  const text = control.value.trim();
  if (text === "") return undefined;
  return rule.type === "integer" || rule.type === "number" ? Number(text) : text;
}

/** The submit body for `spec` from the form: only what the model takes and what was set. */
export function requestBody(spec) {
  const input = { prompt: byId("prompt").value };
  const negative = byId("negative-prompt").value.trim();
  if (spec.negative_prompt && negative) input.negative_prompt = negative;
  const parameters = { size: byId("size").value.trim() };
  for (const name of NUMBERS) {
    const value = spec[name] ? numberOf(name) : undefined;
    if (value !== undefined) parameters[name] = value;
  }
  for (const [name, rule] of Object.entries(spec.fields || {})) {
    const value = fieldValue(name, rule);
    if (value === undefined) continue;
    if (rule.in === "input") input[name] = value;
    else parameters[name] = value;
  }
  const priority = byId("priority").value;
  if (priority !== "normal") parameters.priority = priority;
  return { model: spec.model, input, parameters };
}
