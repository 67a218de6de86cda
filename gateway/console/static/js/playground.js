// The playground: a tenant signs in with an API key, picks a model it may use, generates,
// watches the task's events, sees its images and its recent tasks.

import { ApiError, FINAL, call, followTask } from "./api.js";
import { byId, copyText, el, fill, showError } from "./elements.js";
import { renderModelFields, requestBody } from "./model_form.js";
import { RecentTasks } from "./recent_tasks.js";
import { apiKey } from "./session.js";
import { curlCommand, pythonSdk } from "./snippets.js";

const SUBMIT = "/api/v1/services/aigc/text2image/image-synthesis";

export class Playground {
  constructor() {
    this.models = [];
    this.lastBody = null;
    this.following = null; // the AbortController of the task stream
    this.error = byId("play-error");
    this.recent = new RecentTasks(byId("recent-rows"), () => apiKey.get(), (e) => this.fail(e));
    byId("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn(byId("api-key").value.trim());
    });
    byId("key-sign-out").addEventListener("click", () => this.signOut());
    byId("model").addEventListener("change", () => this.chooseModel());
    byId("generate-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.generate();
    });
    byId("task-cancel").addEventListener("click", () => this.cancelShown());
    byId("recent-refresh").addEventListener("click", () => this.recent.load());
    byId("copy-curl").addEventListener("click", () => this.showSnippet(curlCommand));
    byId("copy-python").addEventListener("click", () => this.showSnippet(pythonSdk));
  }

  /** On page load: the key this tab signed in with, if any. */
  async resume() {
    if (apiKey.get()) await this.signIn(apiKey.get());
  }

  fail(error) {
    showError(this.error, error);
  }

  async signIn(key) {
    this.fail(null);
    if (!key) {
      this.fail(new ApiError("InvalidApiKey", "Type an API key first."));
      return;
    }
    let answer;
    try {
      answer = await call("/api/v1/models", key);
    } catch (error) {
      apiKey.clear();
      this.fail(error);
      return;
    }
    apiKey.set(key);
    byId("api-key").value = "";
    this.models = answer.output.models;
    fill(
      byId("model"),
      this.models.map((model) => el("option", { value: model.model }, model.model)),
    );
    byId("key-form").hidden = true;
    byId("play-signed-in").hidden = false;
    if (!this.models.length) {
      this.fail(new ApiError("AccessDenied", "This key's tenant may use no model."));
    }
    this.chooseModel();
    await this.recent.load();
  }

  signOut() {
    this.following?.abort();
    this.recent.stop();
    apiKey.clear();
    this.lastBody = null;
    this.fail(null);
    byId("task-view").hidden = true;
    byId("task-empty").hidden = false;
    fill(byId("recent-rows"));
    byId("play-signed-in").hidden = true;
    byId("key-form").hidden = false;
    byId("api-key").focus();
  }

  chooseModel() {
    const spec = this.models.find((model) => model.model === byId("model").value);
    if (spec) renderModelFields(spec);
  }

  async generate() {
    this.fail(null);
    const spec = this.models.find((model) => model.model === byId("model").value);
    if (!spec) return;
    const body = requestBody(spec);
    const button = byId("generate");
    button.disabled = true;
    let answer;
    try {
      answer = await call(SUBMIT, apiKey.get(), {
        method: "POST",
        body,
        headers: { "X-DashScope-Async": "enable" },
      });
    } catch (error) {
      this.fail(error);
      return;
    } finally {
      button.disabled = false;
    }
    this.lastBody = body;
    fill(byId("snippet"));
    byId("snippet").hidden = true;
    this.follow(answer.output.task_id, body.parameters?.n || 1);
    this.recent.load();
  }

  /** Show a task from its submit to its end, over its event stream. */
  async follow(taskId, n) {
    this.following?.abort();
    const controller = new AbortController();
    this.following = controller;
    byId("task-empty").hidden = true;
    byId("task-view").hidden = false;
    byId("task-id").textContent = taskId;
    byId("task-progress").value = 0;
    this.renderStatus({ output: { task_id: taskId, task_status: "PENDING" } }, n);
    try {
      const final = await followTask(
        taskId,
        apiKey.get(),
        (body) => this.renderStatus(body, n),
        controller.signal,
      );
      if (final) this.recent.load();
    } catch (error) {
      this.fail(error);
    }
  }

  renderStatus(body, n) {
    const output = body.output || {};
    const status = output.task_status;
    const badge = byId("task-status");
    badge.textContent = status;
    badge.className = `badge status-${String(status).toLowerCase()}`;
    const progress = output.progress ?? (status === "SUCCEEDED" ? 100 : 0);
    byId("task-progress").value = progress;
    const done = output.images_done ?? 0;
    const text = {
      PENDING: "Waiting in the queue",
      RUNNING: `${progress}% · ${done} of ${n} stored`,
      SUCCEEDED: `Done · ${output.task_metrics?.SUCCEEDED ?? done} of ${n} made`,
      FAILED: "Failed",
      CANCELED: "Canceled",
      UNKNOWN: "Unknown: the task is gone",
    }[status];
    byId("task-progress-text").textContent = text || status;
    byId("task-cancel").hidden = status !== "PENDING";
    const failure = byId("task-error");
    showError(failure, output.code ? { code: output.code, message: output.message } : null);
    this.renderImages(output, n);
  }

  renderImages(output, n) {
    const results = output.results || [];
    const done = output.images_done ?? 0;
    const figures = [];
    for (let i = 0; i < Math.max(n, results.length); i += 1) {
      const result = results[i];
      const caption = `Image ${i + 1} of ${Math.max(n, results.length)}`;
      if (result?.url) {
        const image = el("img", { src: result.url, alt: caption, className: "generated" });
        const link = el("a", { href: result.url, target: "_blank", rel: "noopener" }, image);
        figures.push(el("figure", { className: "slot" }, link));
      } else if (result?.code) {
        const message = `${result.code}: ${result.message || ""}`;
        figures.push(el("figure", { className: "slot failed" }, el("figcaption", {}, message)));
      } else if (!FINAL.has(output.task_status)) {
        const state = i < done ? "stored" : "waiting";
        const label = i < done ? "stored, shown when the task ends" : "being made";
        figures.push(
          el(
            "figure",
            { className: `slot ${state}` },
            el("figcaption", {}, `${caption}: ${label}`),
          ),
        );
      }
    }
    const box = byId("task-images");
    // Images already shown stay (no reload, no flicker) while the task only progresses.
    if (box.dataset.final === output.task_status && FINAL.has(output.task_status)) return;
    box.dataset.final = FINAL.has(output.task_status) ? output.task_status : "";
    fill(box, figures);
  }

  async cancelShown() {
    this.fail(null);
    try {
      const taskId = encodeURIComponent(byId("task-id").textContent);
      await call(`/api/v1/tasks/${taskId}/cancel`, apiKey.get(), { method: "POST" });
    } catch (error) {
      this.fail(error);
    }
  }

  async showSnippet(render) {
    if (!this.lastBody) return;
    const text = render(window.location.origin, this.lastBody);
    const box = byId("snippet");
    box.textContent = text;
    box.hidden = false;
    const copied = await copyText(text);
    byId("snippet-note").textContent = copied
      ? "Copied to the clipboard. Set DASHSCOPE_API_KEY to your key before running it."
      : "Select and copy it. Set DASHSCOPE_API_KEY to your key before running it.";
  }
}
