// Labels: printable nameplates (QR code of the answer page, the identifier, the holder) for a list of
// identifiers or for everything under a prefix. URL: /labels?id=A&id=B or /labels?prefix=P[&after=K].
// The print stylesheet lays them out 2 x 6 on A4.

import { get, pathOf } from "../api.js";
import { h, humanIdentifier, message } from "../dom.js";
import { navigate } from "../router.js";

function form(query) {
  const ids = h("textarea", { id: "ids", name: "ids", rows: "4", autocomplete: "off", spellcheck: "false",
    "aria-describedby": "ids-hint" }, query.getAll("id").join("\n"));
  const prefix = h("input", { id: "prefix", name: "prefix", type: "text", autocomplete: "off",
    value: query.get("prefix") || "", "aria-describedby": "prefix-hint" });
  const el = h("form", { class: "search no-print" },
    h("div", { class: "field" }, h("label", { for: "ids" }, "Identifiers, one per line"), ids,
      h("p", { class: "hint", id: "ids-hint" }, "Any form the resolver accepts; each becomes one label.")),
    h("div", { class: "field" }, h("label", { for: "prefix" }, "or every identifier under a prefix"), prefix,
      h("p", { class: "hint", id: "prefix-hint" }, "For example 88.100.1 or gs1:9506000.")),
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Make labels"),
      h("button", { type: "button", class: "secondary", onclick: () => window.print() }, "Print")));
  el.addEventListener("submit", event => {
    event.preventDefault();
    const q = new URLSearchParams();
    const list = ids.value.split("\n").map(x => x.trim()).filter(Boolean);
    if (list.length) list.forEach(id => q.append("id", id));
    else if (prefix.value.trim()) q.set("prefix", prefix.value.trim());
    else return;
    navigate(`/labels?${q}`);
  });
  return el;
}

function label(l) {
  if (l.error) {
    return h("article", { class: "label no-print" }, h("div", { class: "label-text" },
      h("span", { class: "label-id" }, l.input), h("span", { class: "label-warn" }, `Not a valid identifier: ${l.message}`)));
  }
  return h("article", { class: "label", "data-identifier": l.identifier, "data-url": l.url },
    // The QR code encodes the answer page on this node (l.url): a phone's camera opens the answer.
    h("img", { class: "qr", src: `/v1/qr/${pathOf(l.identifier)}.svg?page=true&scale=6`, alt: `QR code for ${l.url}` }),
    h("div", { class: "label-text" },
      h("span", { class: "label-id" }, humanIdentifier(l.identifier)),
      h("span", { class: "holder" }, l.holder_name ? `Holder: ${l.holder_name}` : "Holder: unknown prefix"),
      h("span", { class: "label-url" }, l.url),
      l.registered ? null : h("span", { class: "label-warn badge warn" }, "not registered")));
}

export async function render(view, { query, signal }) {
  document.title = "Labels · Ledger explorer";
  view.append(h("h1", { class: "no-print" }, "Labels"), form(query));
  const q = new URLSearchParams();
  for (const id of query.getAll("id")) q.append("identifier", id);
  if (!q.has("identifier")) {
    if (!query.get("prefix")) {
      view.append(h("p", { class: "muted" }, "Each label carries a QR code of the identifier's answer page, the identifier, " +
        "and the organisation holding it. Print on A4: twelve 90 × 45 mm labels a page."));
      return;
    }
    q.set("prefix", query.get("prefix"));
    if (query.get("after")) q.set("after", query.get("after"));
    q.set("limit", "48");
  }
  const res = await get(`/v1/labels?${q}`, { signal });
  if (!res.ok) {
    view.append(message("error", res.body.message || "The labels could not be made."));
    return;
  }
  const labels = res.body.labels;
  view.append(h("p", { class: "muted no-print" }, `${labels.length} label${labels.length === 1 ? "" : "s"}.`));
  view.append(h("div", { class: "sheet", "aria-label": "Label sheet" }, labels.map(label)));
  if (res.body.next_after) {
    const next = new URLSearchParams({ prefix: query.get("prefix"), after: res.body.next_after });
    view.append(h("p", { class: "pager no-print" }, h("a", { href: `/labels?${next}` }, "Next labels →")));
  }
}
