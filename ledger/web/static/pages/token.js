// Token: owner, kind, metadata, lease and lock state, full history, the licence tree, and the market: its
// listing, royalty, open offers, price history (a chart) and appraisals.
// URL: /token/<id>.

import { get, keyOfPath, memberName, resolveUrl } from "../api.js";
import { priceChart } from "../chart.js";
import { check, verdictEl } from "../check.js";
import { badge, externalLink, facts, fmtTime, h, humanIdentifier, message, table, timeEl } from "../dom.js";

const REASONS = {
  not_yet_valid: "Not yet valid",
  ancestor_revoked: "Inactive: a licence above it was revoked",
  ancestor_expired: "Inactive: a licence above it expired",
  ancestor_not_yet_valid: "Inactive: a licence above it is not yet valid",
  ancestor_missing: "Inactive: its parent licence is missing",
};

function memberEl(id, names) {
  return h("span", { title: id }, names.get(id) || id);
}

/** A licence's state as [class, badge text, explanation]: never told by colour alone. */
function licenceState(l, names) {
  if (l.revoked) {
    return ["revoked", "Revoked", [`Revoked ${fmtTime(l.revoked_at)} by `, memberEl(l.revoked_by, names), ` (block ${l.revoked_height})`]];
  }
  if (l.inactive_reason === "expired") return ["expired", "Expired", [`Expired ${fmtTime(l.valid_until)}`]];
  if (l.active) return ["active", "Active", [`Valid ${fmtTime(l.valid_from)} – ${fmtTime(l.valid_until)}`]];
  return ["inactive", "Inactive", [REASONS[l.inactive_reason] || l.inactive_reason]];
}

function licenceItem(l, children, names) {
  const [state, word, why] = licenceState(l, names);
  const box = h("div", { class: `licence ${state}`, "data-licence": l.id, "data-state": state },
    badge(state, word), " ",
    h("span", { class: "who" }, h("strong", {}, names.get(l.holder) || l.holder), ` for ${l.purposes.join(", ")}`),
    h("div", { class: "muted" }, why),
    h("div", { class: "muted" }, l.parent ? "Sublicence granted by " : "Granted by ", memberEl(l.grantor, names),
      l.sublicensable ? " · may sublicense" : "", " · ", h("span", { class: "mono", title: l.id }, l.id.slice(0, 12))),
    l.terms_uri ? h("div", {}, "Terms: ", externalLink(l.terms_uri)) : null);
  return h("li", {}, box, children);
}

/** The ERC-5218 tree as nested lists: roots first, each licence above its sublicences. */
function licenceTree(licences, names) {
  const ids = new Set(licences.map(l => l.id));
  const children = new Map();
  for (const l of licences) {
    const parent = l.parent && ids.has(l.parent) ? l.parent : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(l);
  }
  const branch = (parent, cls) => {
    const kids = children.get(parent) || [];
    if (!kids.length) return null;
    return h("ul", { class: cls }, kids.map(l => licenceItem(l, branch(l.id, null), names)));
  };
  return branch("", "tree") || h("p", { class: "muted" }, "No licences.");
}

const EVENTS = {
  mint: "Minted", approve: "Approval", lease: "Lease", lock: "Locked", unlock: "Unlocked", transfer: "Transferred",
  burn: "Burned (decommissioned)",
};

/** The market card: listing, royalty, open offers, price history and appraisals (listings from this node). */
async function marketCard(enc, signal) {
  const [listing, prices, appraisals] = await Promise.all([
    get(`/v1/market/listings/${enc}`, { signal }), get(`/v1/market/prices?token=${enc}&recent=100`, { signal }),
    get(`/v1/market/appraisals/${enc}`, { signal }),
  ]);
  const l = listing.ok ? listing.body : null;
  const sales = prices.ok ? prices.body.sales : [];
  const found = appraisals.ok ? appraisals.body.appraisals : [];
  const who = await names([l && l.listing && l.listing.seller, l && l.royalty && l.royalty.creator,
    ...sales.flatMap(x => [x.seller, x.buyer]), ...found.map(a => a.appraiser)]);
  const windows = prices.ok ? prices.body.windows : {};
  const all = windows.all || windows["30d"];
  const listed = l && l.listing
    ? [h("strong", {}, `${l.listing.price} credits`), " by ", memberEl(l.listing.seller, who), " until ",
      timeEl(l.listing.expires), " ", l.buyable ? badge("active", "For sale") : badge("expired", l.not_buyable_reason)]
    : "not listed";
  return h("section", { class: "card", id: "market", "aria-labelledby": "market-title" },
    h("h2", { id: "market-title" }, "Market"),
    facts([
      ["Listing", listed],
      ["Royalty", l && l.royalty ? [`${l.royalty.bps / 100}% of every later sale to `, memberEl(l.royalty.creator, who)]
        : "none"],
      ["Open offers", l && l.open_offers ? String(l.open_offers.length) : null],
      ["Prices", all && all.count ? `last ${all.last}, median ${all.median}, average ${Math.round(all.vwap * 100) / 100} ` +
        `credits over ${all.count} sale${all.count === 1 ? "" : "s"}` : "no sales yet"],
    ]),
    sales.length ? priceChart(sales) : null,
    sales.length ? table(["When", "Price", "Royalty", "Seller → buyer", "How", "Block"], sales.map(x => h("tr", { "data-sale": x.seq },
      h("td", {}, timeEl(x.timestamp)), h("td", { class: "num" }, String(x.price)), h("td", { class: "num" }, String(x.royalty)),
      h("td", {}, memberEl(x.seller, who), " → ", memberEl(x.buyer, who)), h("td", {}, x.via),
      h("td", { class: "num" }, h("a", { href: `/block/${x.height}` }, String(x.height)))))) : null,
    h("h3", {}, "Appraisals"),
    found.length ? table(["As of", "Value", "Method", "Appraiser", "Evidence"], found.map(a => h("tr", { "data-appraisal": a.seq },
      h("td", {}, timeEl(a.date)), h("td", { class: "num" }, String(a.value)), h("td", { class: "wrap" }, a.method),
      h("td", {}, memberEl(a.appraiser, who)), h("td", { class: "mono" }, a.evidence.slice(0, 16))))) : h("p", { class: "muted" }, "None."),
    h("p", { class: "hint" }, "From this node, not checked in this browser (each balance, listing, offer and appraisal ",
      "has a proof: ", h("code", {}, "ledger market show|appraisals TOKEN --proof"), ")."));
}

async function names(ids) {
  const unique = [...new Set(ids.filter(Boolean))];
  const found = await Promise.all(unique.map(memberName));
  return new Map(unique.map((id, i) => [id, found[i]]).filter(([, n]) => n));
}

export async function render(view, { params, signal }) {
  const token = keyOfPath(params[0]);
  const enc = encodeURIComponent(token);
  document.title = `Token ${token} · Ledger explorer`;
  view.append(h("h1", {}, `Token ${token}`));
  // The token and its provenance come with a proof this browser checks; the licence tree is a listing.
  const [asset, licences] = await Promise.all([
    get(`/v1/assets/${enc}?proof=true&history=true`, { signal }), get(`/v1/assets/${enc}/licences`, { signal }),
  ]);
  if (!asset.ok) {
    view.append(message("error", asset.status === 404 ? `There is no token ${token} on this ledger.` : asset.body.message));
    return;
  }
  view.append(verdictEl(await check(asset.text), { what: "this token's record and history" }));
  const a = asset.body.asset;
  const events = asset.body.history || [];
  const tree = licences.ok ? licences.body.licences : [];
  const who = await names([a.owner, a.minter, a.user, a.approved, ...events.flatMap(e => [e.actor, e.from_member, e.to_member]),
    ...tree.flatMap(l => [l.holder, l.grantor, l.revoked_by])]);
  const lease = asset.body.user_of
    ? [memberEl(asset.body.user_of, who), " until ", timeEl(a.user_expires)]
    : a.user ? ["lease to ", memberEl(a.user, who), " expired ", timeEl(a.user_expires)] : "not leased";
  view.append(h("section", { class: "card", "aria-labelledby": "asset-title" },
    h("h2", { id: "asset-title" }, "Token"),
    facts([
      ["Owner", a.burned ? badge("burned", "Burned: no owner") : memberEl(a.owner, who)],
      ["Kind", a.kind],
      ["Identifier", a.identifier ? h("a", { href: resolveUrl(a.identifier) }, humanIdentifier(a.identifier)) : "not bound"],
      ["Metadata", externalLink(a.uri)],
      ["Metadata SHA-256", h("span", { class: "mono" }, a.sha256)],
      ["Lock", a.locked ? [badge("warn", "Locked"), " cannot change hands until its owner unlocks it"] : "not locked"],
      ["Lease", lease],
      ["Approved", a.approved ? memberEl(a.approved, who) : null],
      ["Minted", [timeEl(a.minted_at), " in ", h("a", { href: `/block/${a.minted_height}` }, `block ${a.minted_height}`),
        " by ", memberEl(a.minter, who)]],
      ["As of", h("a", { href: `/block/${asset.body.height}` }, `block ${asset.body.height}`)],
    ])));
  view.append(h("section", { class: "card", "aria-labelledby": "history-title" },
    h("h2", { id: "history-title" }, "History"),
    asset.body.history_start > 1 ? h("p", { class: "muted" }, `The latest ${events.length} events.`) : null,
    table(["When", "Event", "From → to", "By", "Block", "Detail"], events.map(e => h("tr", { "data-event": e.event },
      h("td", {}, timeEl(e.timestamp)), h("td", {}, EVENTS[e.event] || e.event),
      h("td", {}, e.from_member || e.to_member ? [e.from_member ? memberEl(e.from_member, who) : "—", " → ",
        e.to_member ? memberEl(e.to_member, who) : "—"] : ""),
      h("td", {}, memberEl(e.actor, who)), h("td", { class: "num" }, h("a", { href: `/block/${e.height}` }, String(e.height))),
      h("td", { class: "wrap" }, e.detail || ""))))));
  const counts = tree.reduce((c, l) => ({ ...c, [licenceState(l, who)[0]]: (c[licenceState(l, who)[0]] || 0) + 1 }), {});
  view.append(h("section", { class: "card", id: "licences", "aria-labelledby": "tree-title" },
    h("h2", { id: "tree-title" }, "Licence tree"),
    h("p", { class: "muted" }, tree.length
      ? `${tree.length} licences: ${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ")}; states as of now.`
      : "No licences granted on this token."),
    h("p", { class: "hint" }, "A listing from this node, not checked in this browser (each licence and each rights ",
      "check can be, with its proof: ", h("code", {}, "ledger rights check ... --proof"), ")."),
    licenceTree(tree, who)));
  view.append(await marketCard(enc, signal));
  if (location.hash === "#licences") document.getElementById("licences").scrollIntoView();
}
