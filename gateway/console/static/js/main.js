// The console's entry: the two pages (#playground, #admin) and what each signed in with.

import { Admin } from "./admin.js";
import { byId } from "./elements.js";
import { Playground } from "./playground.js";

const PAGES = ["playground", "admin"];

function show(admin, page) {
  for (const name of PAGES) {
    byId(name).hidden = name !== page;
    const link = byId(`nav-${name}`);
    if (name === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `synthgate · ${page === "admin" ? "Admin" : "Playground"}`;
  admin.visible(page === "admin");
}

function pageOf(hash) {
  const name = hash.replace(/^#/, "");
  return PAGES.includes(name) ? name : "playground";
}

const playground = new Playground();
const admin = new Admin();
window.addEventListener("hashchange", () => show(admin, pageOf(window.location.hash)));
show(admin, pageOf(window.location.hash));
byId("console").dataset.ready = "true"; // the scripts run: the tests wait for this
await Promise.all([playground.resume(), admin.resume()]);
