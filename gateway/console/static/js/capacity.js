// The admin page's capacity: each pool's waiting tasks, the oldest's wait and its live
// workers, and each DashScope account's running tasks against its limits, read every few
// seconds while the admin page is shown.

import { call } from "./api.js";
import { byId, el, fill } from "./elements.js";

const REFRESH_MS = 5000;

function seconds(value) {
  if (!value) return "–";
  return value < 60 ? `${value.toFixed(1)} s` : `${Math.round(value / 60)} min`;
}

export class Capacity {
  constructor(token, fail) {
    this.token = token;
    this.fail = fail;
    this.timer = null;
  }

  start() {
    if (this.timer === null) this.timer = setInterval(() => this.load(), REFRESH_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async load() {
    const token = this.token();
    if (!token) return;
    let pools;
    let accounts;
    try {
      [pools, accounts] = await Promise.all([
        call("/admin/v1/pools", token),
        call("/admin/v1/upstream-accounts", token),
      ]);
    } catch (error) {
      this.fail(error);
      return;
    }
    fill(byId("pool-rows"), pools.pools.map((pool) => this.poolRow(pool)));
    const rows = accounts.accounts.map((account) => this.accountRow(account));
    if (!rows.length) {
      const none = "No upstream account: no model is made by DashScope here.";
      rows.push(el("tr", {}, el("td", { colSpan: 3, className: "hint" }, none)));
    }
    fill(byId("account-rows"), rows);
    const now = new Date().toISOString().slice(11, 19);
    byId("capacity-updated").textContent = `updated ${now} UTC`;
  }

  poolRow(pool) {
    const workers = el(
      "span",
      { className: `badge ${pool.live_workers ? "status-succeeded" : "status-failed"}` },
      String(pool.live_workers),
    );
    return el(
      "tr",
      { "data-pool": pool.pool },
      el("td", {}, el("code", {}, pool.pool)),
      el("td", {}, String(pool.depth)),
      el("td", {}, seconds(pool.oldest_age_seconds)),
      el("td", {}, workers),
    );
  }

  accountRow(account) {
    const models = Object.keys(account.max_running).sort();
    const running = models.map((model) =>
      el(
        "div",
        { className: "account-model" },
        el("code", {}, model),
        ` ${account.running[model] ?? 0} / ${account.max_running[model]}`,
      ),
    );
    const resting = account.resting_seconds;
    const state = resting
      ? el("span", { className: "badge status-failed" }, `throttled ${seconds(resting)}`)
      : el("span", { className: "badge status-succeeded" }, "ready");
    return el(
      "tr",
      { "data-account": account.account },
      el("td", {}, el("strong", {}, account.account), " ", state),
      el("td", {}, running),
      el("td", {}, String(account.waiting)),
    );
  }
}
