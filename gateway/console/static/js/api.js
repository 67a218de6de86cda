// The gateway's APIs as the console calls them: same-origin fetch() with the key or the
// admin token in the Authorization header (never in a URL), DashScope errors as ApiError,
// and the task events stream read through fetch() (EventSource cannot send the header).

export const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"]);

/** An error answer of the API: its DashScope code, message and request id. */
export class ApiError extends Error {
  constructor(code, message, status = 0, requestId = "") {
    super(message);
    this.code = code;
    this.status = status;
    this.requestId = requestId;
  }

  static async of(response) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // not JSON (a proxy's page): the status says what happened
    }
    const code = body.code || `HTTP ${response.status}`;
    const message = body.message || response.statusText || "The request failed.";
    return new ApiError(code, message, response.status, body.request_id || "");
  }
}

function networkError(error) {
  return new ApiError("NetworkError", `The gateway did not answer: ${error.message}`);
}

/** Call the API: `credential` is the API key or admin token; `body` is sent as JSON. */
export async function call(path, credential, { method = "GET", body, headers = {} } = {}) {
  const init = {
    method,
    cache: "no-store",
    headers: { Authorization: `Bearer ${credential}`, ...headers },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw networkError(error);
  }
  if (!response.ok) throw await ApiError.of(response);
  return response.json();
}

/** The events of a Server-Sent Events body, as {event, data, retry}. */
async function* serverEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { event: "message", data: "", retry: 0 };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue; // a comment: the keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.event = text;
        else if (field === "data") event.data += text;
        else if (field === "retry") event.retry = Number(text) || 0;
      }
      yield event;
    }
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/** Follow a task's events until its status is final: `onStatus` gets each body (a task
 * fetch's). The gateway ends a long stream after a while; it is opened again then.
 * Resolves with the final body, or undefined once `signal` aborts. */
export async function followTask(taskId, key, onStatus, signal) {
  const path = `/api/v1/tasks/${encodeURIComponent(taskId)}/events`;
  let retryMs = 1000;
  let failures = 0;
  while (!signal.aborted) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${key}`, Accept: "text/event-stream" },
        cache: "no-store",
        signal,
      });
    } catch (error) {
      if (signal.aborted) return undefined;
      if (++failures > 5) throw networkError(error);
      await sleep(retryMs * failures, signal);
      continue;
    }
    if (!response.ok) throw await ApiError.of(response);
    try {
      for await (const event of serverEvents(response.body)) {
        if (event.retry) retryMs = event.retry;
        if (!event.data) continue;
        const data = JSON.parse(event.data);
        if (event.event === "error") {
          throw new ApiError(data.code, data.message, 0, data.request_id);
        }
        failures = 0;
        onStatus(data);
        if (FINAL.has(data.output?.task_status)) return data;
      }
    } catch (error) {
      if (signal.aborted) return undefined;
      if (error instanceof ApiError || ++failures > 5) throw error;
    }
    await sleep(retryMs, signal);
  }
  return undefined;
}
