// The tenant's recent tasks (the list API, newest first) with their status, times and a
// thumbnail of each finished one, and a Cancel button on each pending one.

import { call } from "./api.js";
import { duration, el, fill, shortTime, statusBadge } from "./elements.js";

const PAGE_SIZE = 10;
const REFRESH_MS = 3000; // while a listed task is unfinished (it may come from elsewhere)
const UNFINISHED = new Set(["PENDING", "RUNNING"]);

export class RecentTasks {
  constructor(rows, key, fail) {
    this.rows = rows;
    this.key = key;
    this.fail = fail;
    this.thumbnails = new Map(); // task id -> first image URL (valid as long as the task)
    this.loading = null;
    this.stale = false;
    this.timer = null;
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Load the first page again: one load at a time, and a call during one loads once more
   * after it (the list may have changed since that one asked). */
  async load() {
    if (this.loading) {
      this.stale = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.stale = false;
        await this.fetchAndRender();
      } while (this.stale);
    })().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  async fetchAndRender() {
    const key = this.key();
    if (!key) return;
    let page;
    try {
      page = await call(`/api/v1/tasks?page_size=${PAGE_SIZE}`, key);
    } catch (error) {
      this.fail(error);
      return;
    }
    const tasks = page.data || [];
    await Promise.all(tasks.map((task) => this.findThumbnail(task, key)));
    if (key !== this.key()) return; // signed out meanwhile
    this.stop();
    if (tasks.some((task) => UNFINISHED.has(task.task_status))) {
      this.timer = setTimeout(() => this.load(), REFRESH_MS);
    }
    if (!tasks.length) {
      const empty = el("td", { colSpan: 8, className: "hint" }, "No tasks yet.");
      fill(this.rows, el("tr", {}, empty));
      return;
    }
    fill(this.rows, tasks.map((task) => this.row(task)));
  }

  async findThumbnail(task, key) {
    if (task.task_status !== "SUCCEEDED" || this.thumbnails.has(task.task_id)) return;
    try {
      const body = await call(`/api/v1/tasks/${encodeURIComponent(task.task_id)}`, key);
      const first = (body.output.results || []).find((result) => result.url);
      this.thumbnails.set(task.task_id, first ? first.url : "");
    } catch {
      // no thumbnail this time; the row still shows
    }
  }

  row(task) {
    const url = this.thumbnails.get(task.task_id);
    const thumbnail = url
      ? el("img", { src: url, alt: `First image of task ${task.task_id}`, className: "thumb" })
      : "";
    const cancel =
      task.task_status === "PENDING"
        ? el("button", { type: "button", className: "small", "data-task": task.task_id }, "Cancel")
        : "";
    if (cancel) cancel.addEventListener("click", () => this.cancel(task.task_id));
    return el(
      "tr",
      { "data-task": task.task_id },
      el("td", {}, thumbnail),
      el("td", {}, el("code", { title: task.task_id }, task.task_id.slice(0, 8))),
      el("td", {}, task.model_name),
      el("td", {}, statusBadge(task.task_status)),
      el("td", { title: task.submit_time }, shortTime(task.submit_time)),
      el("td", { title: task.start_time || "" }, shortTime(task.start_time)),
      el("td", {}, duration(task.submit_time, task.end_time)),
      el("td", {}, cancel),
    );
  }

  async cancel(taskId) {
    this.fail(null);
    try {
      await call(`/api/v1/tasks/${encodeURIComponent(taskId)}/cancel`, this.key(), {
        method: "POST",
      });
    } catch (error) {
      this.fail(error);
    }
    await this.load();
  }
}
