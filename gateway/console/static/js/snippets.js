// "Copy as curl" and "Copy as Python SDK": the request just made, as a user would type it,
// with the key left to the environment ($DASHSCOPE_API_KEY), never in clear.

const SUBMIT_PATH = "/api/v1/services/aigc/text2image/image-synthesis";

function shellQuote(text) {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** The submit as a curl command. */
export function curlCommand(origin, body) {
  const json = JSON.stringify(body, null, 2);
  return [
    `curl -s ${shellQuote(origin + SUBMIT_PATH)} \\`,
    `  -H 'X-DashScope-Async: enable' \\`,
    `  -H "Authorization: Bearer $DASHSCOPE_API_KEY" \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -d ${shellQuote(json)}`,
  ].join("\n");
}

/** A Python literal of a JSON value (JSON strings are Python strings). */
function python(value) {
  if (value === true) return "True";
  if (value === false) return "False";
  if (value === null || value === undefined) return "None";
  if (Array.isArray(value)) return `[${value.map(python).join(", ")}]`;
  if (typeof value === "object") {
    const items = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${python(v)}`);
    return `{${items.join(", ")}}`;
  }
  return JSON.stringify(value);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The submit with the dashscope SDK: ImageSynthesis.async_call, then wait. The SDK puts
 * the prompts in `input` and its keyword arguments in `parameters`. */
export function pythonSdk(origin, body) {
  const args = [`model=${python(body.model)}`];
  const { prompt, negative_prompt: negative, ...otherInput } = body.input;
  args.push(`prompt=${python(prompt)}`);
  if (negative !== undefined) args.push(`negative_prompt=${python(negative)}`);
  if (Object.keys(otherInput).length) args.push(`extra_input=${python(otherInput)}`);
  for (const [name, value] of Object.entries(body.parameters || {})) {
    if (IDENTIFIER.test(name)) args.push(`${name}=${python(value)}`);
  }
  return [
    "import os",
    "",
    "import dashscope",
    "from dashscope import ImageSynthesis",
    "",
    `dashscope.base_http_api_url = ${python(origin + "/api/v1")}`,
    'dashscope.api_key = os.environ["DASHSCOPE_API_KEY"]',
    "",
    "task = ImageSynthesis.async_call(",
    ...args.map((arg) => `    ${arg},`),
    ")",
    "rsp = ImageSynthesis.wait(task)",
    "print(rsp.output.task_status, [r.url for r in rsp.output.results])",
  ].join("\n");
}
