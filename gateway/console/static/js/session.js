// Who the console calls the APIs as: the tenant's API key and the admin token, each kept
// in this tab's session storage only (gone when the tab closes; never local storage,
// never a URL, never logged).

const API_KEY = "synthgate.apiKey";
const ADMIN_TOKEN = "synthgate.adminToken";

function slot(name) {
  return {
    get: () => sessionStorage.getItem(name) || "",
    set: (value) => sessionStorage.setItem(name, value),
    clear: () => sessionStorage.removeItem(name),
  };
}

export const apiKey = slot(API_KEY);
export const adminToken = slot(ADMIN_TOKEN);
