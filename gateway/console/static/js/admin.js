// The admin page: signed in with the admin token, it lists the tenants with their limits
// and today's usage, creates, edits, disables and enables them, creates keys (shown once)
// and revokes them, and shows the pools and upstream accounts (capacity.js).

import { ApiError, call } from "./api.js";
import { Capacity } from "./capacity.js";
import { byId, el, fill, limitText, showError } from "./elements.js";
import { adminToken } from "./session.js";
import { TenantPanel, readLimits } from "./tenant_panel.js";

function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

export class Admin {
  constructor() {
    this.error = byId("admin-error");
    this.capacity = new Capacity(() => adminToken.get(), (e) => this.fail(e));
    this.panel = new TenantPanel(
      () => adminToken.get(),
      (e) => this.fail(e),
      () => this.loadTenants(),
    );
    byId("admin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn(byId("admin-token").value.trim());
    });
    byId("admin-sign-out").addEventListener("click", () => this.signOut());
    byId("tenants-refresh").addEventListener("click", () => this.refresh());
    byId("create-tenant").addEventListener("submit", (event) => {
      event.preventDefault();
      this.createTenant();
    });
  }

  fail(error) {
    showError(this.error, error);
  }

  async resume() {
    if (adminToken.get()) await this.signIn(adminToken.get());
  }

  async signIn(token) {
    this.fail(null);
    if (!token) {
      this.fail(new ApiError("InvalidApiKey", "Type the admin token first."));
      return;
    }
    try {
      await call("/admin/v1/tenants", token);
    } catch (error) {
      adminToken.clear();
      if (error.status === 404) {
        error.message += " The admin API is off: SYNTHGATE_ADMIN_TOKEN is not set.";
      }
      this.fail(error);
      return;
    }
    adminToken.set(token);
    byId("admin-token").value = "";
    byId("admin-form").hidden = true;
    byId("admin-signed-in").hidden = false;
    await this.refresh();
  }

  signOut() {
    adminToken.clear();
    this.capacity.stop();
    this.panel.close();
    this.fail(null);
    fill(byId("tenant-rows"));
    byId("created").hidden = true;
    byId("admin-signed-in").hidden = true;
    byId("admin-form").hidden = false;
  }

  /** Called when the admin page is shown or left. */
  visible(shown) {
    if (shown && adminToken.get()) this.capacity.start();
    else this.capacity.stop();
  }

  async refresh() {
    await Promise.all([this.loadTenants(), this.capacity.load()]);
    if (!byId("admin").hidden) this.capacity.start();
  }

  async loadTenants() {
    const token = adminToken.get();
    let tenants;
    try {
      tenants = (await call("/admin/v1/tenants", token)).tenants;
    } catch (error) {
      this.fail(error);
      return;
    }
    const usage = await Promise.all(
      tenants.map((tenant) =>
        call(`/admin/v1/tenants/${encodeURIComponent(tenant.name)}/usage`, token).then(
          (answer) => answer.usage[0],
          () => null,
        ),
      ),
    );
    if (!tenants.length) {
      fill(byId("tenant-rows"), el("tr", {}, el("td", { colSpan: 9 }, "No tenants yet.")));
      return;
    }
    fill(
      byId("tenant-rows"),
      tenants.map((tenant, i) => this.row(tenant, usage[i])),
    );
  }

  row(tenant, today) {
    const manage = el("button", { type: "button", className: "small" }, "Manage");
    manage.addEventListener("click", () => this.panel.open(tenant.name));
    const toggle = el(
      "button",
      { type: "button", className: "small" },
      tenant.enabled ? "Disable" : "Enable",
    );
    toggle.addEventListener("click", () => this.panel.setEnabled(tenant.name, !tenant.enabled));
    const used = today ? `${count(today.tasks, "task")} · ${count(today.images, "image")}` : "–";
    const state = el(
      "span",
      { className: `badge ${tenant.enabled ? "status-succeeded" : "status-failed"}` },
      tenant.enabled ? "enabled" : "disabled",
    );
    return el(
      "tr",
      { "data-tenant": tenant.name },
      el("td", {}, el("strong", {}, tenant.name)),
      el("td", {}, state),
      el("td", {}, limitText(tenant.rpm)),
      el("td", {}, limitText(tenant.max_concurrent)),
      el("td", {}, limitText(tenant.daily_images)),
      el("td", { className: "models" }, tenant.models.length ? tenant.models.join(", ") : "all"),
      el("td", {}, String(tenant.weight)),
      el("td", {}, used),
      el("td", { className: "actions" }, manage, toggle),
    );
  }

  async createTenant() {
    this.fail(null);
    const body = {
      name: byId("new-name").value.trim(),
      key_label: byId("new-key-label").value.trim() || "default",
      ...readLimits("new"),
    };
    let answer;
    try {
      answer = await call("/admin/v1/tenants", adminToken.get(), { method: "POST", body });
    } catch (error) {
      this.fail(error);
      return;
    }
    byId("create-tenant").reset();
    this.panel.showSecret(
      `Tenant ${answer.tenant.name} was created.`,
      answer.key,
      answer.webhook_secret,
    );
    await this.loadTenants();
  }
}
