// One tenant on the admin page: edit its limits, enable or disable it, list its keys,
// create one (shown once) and revoke one.

import { call } from "./api.js";
import { byId, copyText, el, fill } from "./elements.js";

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–";
}

/** The limits in a tenant form: number inputs named by `prefix` + field. */
export function readLimits(prefix) {
  const number = (name) => Number(byId(`${prefix}-${name}`).value || 0);
  const models = byId(`${prefix}-models`)
    .value.split(",")
    .map((name) => name.trim())
    .filter(Boolean);
  return {
    rpm: number("rpm"),
    max_concurrent: number("max-concurrent"),
    daily_images: number("daily-images"),
    weight: Number(byId(`${prefix}-weight`).value || 1),
    models,
  };
}

export class TenantPanel {
  constructor(token, fail, changed) {
    this.token = token;
    this.fail = fail;
    this.changed = changed; // the tenants table reloads
    this.name = "";
    byId("tenant-close").addEventListener("click", () => this.close());
    byId("edit-tenant").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    byId("create-key").addEventListener("submit", (event) => {
      event.preventDefault();
      this.createKey();
    });
    byId("created-dismiss").addEventListener("click", () => {
      byId("created").hidden = true;
      fill(byId("created-key"));
    });
    byId("created-copy").addEventListener("click", async () => {
      const copied = await copyText(byId("created-key").textContent);
      byId("created-copy-note").textContent = copied ? "Copied." : "Select and copy it.";
    });
  }

  async open(name) {
    this.fail(null);
    let answer;
    try {
      answer = await call(`/admin/v1/tenants/${encodeURIComponent(name)}`, this.token());
    } catch (error) {
      this.fail(error);
      return;
    }
    this.name = name;
    const { tenant, keys, active_tasks: active } = answer;
    byId("tenant-detail-title").textContent = `Tenant ${tenant.name}`;
    byId("tenant-summary").textContent =
      `${tenant.enabled ? "Enabled" : "Disabled"} · ${active} unfinished tasks · ` +
      `created ${when(tenant.created_ms)}` +
      (tenant.webhook_url ? ` · webhook ${tenant.webhook_url}` : "");
    byId("edit-rpm").value = tenant.rpm;
    byId("edit-max-concurrent").value = tenant.max_concurrent;
    byId("edit-daily-images").value = tenant.daily_images;
    byId("edit-models").value = tenant.models.join(", ");
    byId("edit-weight").value = tenant.weight;
    fill(byId("key-rows"), keys.map((key) => this.keyRow(key)));
    byId("tenant-detail").hidden = false;
  }

  close() {
    this.name = "";
    byId("tenant-detail").hidden = true;
  }

  keyRow(key) {
    let action = "";
    if (!key.revoked_ms) {
      action = el("button", { type: "button", className: "small danger" }, "Revoke");
      action.addEventListener("click", () => this.revoke(key.key_id));
    }
    return el(
      "tr",
      { "data-key": key.key_id },
      el("td", {}, el("code", {}, key.key_id)),
      el("td", {}, key.label || "–"),
      el("td", {}, when(key.created_ms)),
      el("td", {}, when(key.last_used_ms)),
      el("td", {}, key.revoked_ms ? `revoked ${when(key.revoked_ms)}` : "active"),
      el("td", {}, action),
    );
  }

  /** Run an admin call, then show the tenant and the table again. */
  async change(path, init) {
    this.fail(null);
    let answer;
    try {
      answer = await call(path, this.token(), init);
    } catch (error) {
      this.fail(error);
      return undefined;
    }
    if (this.name) await this.open(this.name);
    await this.changed();
    return answer;
  }

  save() {
    const body = readLimits("edit");
    return this.change(`/admin/v1/tenants/${encodeURIComponent(this.name)}`, {
      method: "PATCH",
      body,
    });
  }

  setEnabled(name, enabled) {
    const path = `/admin/v1/tenants/${encodeURIComponent(name)}/${enabled ? "enable" : "disable"}`;
    return this.change(path, { method: "POST" });
  }

  revoke(keyId) {
    return this.change(`/admin/v1/keys/${encodeURIComponent(keyId)}/revoke`, { method: "POST" });
  }

  async createKey() {
    const label = byId("key-label").value.trim();
    const name = this.name;
    const answer = await this.change(`/admin/v1/tenants/${encodeURIComponent(name)}/keys`, {
      method: "POST",
      body: { label },
    });
    if (!answer) return;
    byId("key-label").value = "";
    this.showSecret(`A new key of tenant ${name}.`, answer.key);
  }

  /** A key just made: shown here once, never again. */
  showSecret(title, key, webhookSecret) {
    byId("created-title").textContent = title;
    byId("created-key").textContent = key.api_key;
    byId("created-key-id").textContent = `${key.key_id} (label ${key.label || "–"})`;
    const secret = byId("created-webhook");
    secret.hidden = !webhookSecret;
    byId("created-webhook-secret").textContent = webhookSecret || "";
    byId("created-copy-note").textContent = "";
    byId("created").hidden = false;
  }
}
