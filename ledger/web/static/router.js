// Path-based pages: every page has a plain URL that the node serves (the same index.html), so any
// answer can be linked to, bookmarked, opened in a new tab or printed as a QR code.

let routes = [];
let current = null; // AbortController of the page on screen: aborting stops its fetches and timers

export function setRoutes(list) {
  routes = list;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render(true);
}

/** Change the address bar without re-rendering (e.g. to the canonical form of what was asked). */
export function replaceUrl(url) {
  history.replaceState(null, "", url);
}

function match(pathname) {
  for (const route of routes) {
    const m = route.pattern.exec(pathname);
    if (m) return { route, params: m.slice(1) };
  }
  return null;
}

function markNav(section) {
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

export async function render(moveFocus = false) {
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const main = document.getElementById("main");
  const view = document.createElement("div");
  main.replaceChildren(view);
  const found = match(location.pathname);
  if (!found) {
    view.append("No such page. ");
    const a = document.createElement("a");
    a.href = "/";
    a.textContent = "Resolve an identifier";
    view.append(a);
    return;
  }
  markNav(found.route.section);
  const context = { params: found.params, query: new URLSearchParams(location.search), signal: controller.signal };
  try {
    await found.route.page(view, context);
  } catch (err) {
    if (err.name === "AbortError" || controller.signal.aborted) return;
    console.error(err);
    const p = document.createElement("p");
    p.className = "banner error";
    p.setAttribute("role", "alert");
    p.textContent = `This page could not be shown: ${err.message}`;
    view.append(p);
  }
  if (moveFocus && !controller.signal.aborted) {
    // Screen readers announce the new page's heading; keyboard users start from the top of it.
    const heading = view.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
}

/** Follow same-origin links to pages without reloading; everything else behaves as a normal link. */
function onClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  const a = event.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

export function start() {
  document.addEventListener("click", onClick);
  window.addEventListener("popstate", () => render(true));
  render(false);
}
