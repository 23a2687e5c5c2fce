// Block: header, certificate signers, and its transactions with their outcomes. URL: /block/<height>.

import { get, memberName, validators } from "../api.js";
import { badge, facts, h, hashEl, message, table, timeEl } from "../dom.js";

const SHOWN = 500; // transactions listed at once; a full block holds up to the batch size

function txRow(tx, i, names) {
  const body = tx.tx && typeof tx.tx === "object" ? tx.tx : null;
  const outcome = tx.ok === undefined ? "" : tx.ok ? badge("ok", "ok") : badge("bad", tx.reason || "failed");
  return h("tr", { "data-tx": tx.tx_id },
    h("td", { class: "num" }, String(i)),
    h("td", {}, body ? body.kind : "?"),
    h("td", {}, body ? h("span", { title: body.sender }, names.get(body.sender) || body.sender.slice(0, 10)) : ""),
    h("td", {}, outcome),
    h("td", {}, h("details", {}, h("summary", {}, hashEl(tx.tx_id, 10)),
      h("pre", { class: "json" }, JSON.stringify(body ? body.payload : tx.tx, null, 2)))));
}

export async function render(view, { params, signal }) {
  const height = Number(params[0]);
  document.title = `Block ${height} · Ledger explorer`;
  view.append(h("h1", {}, `Block ${height}`));
  const [res, known] = await Promise.all([get(`/v1/blocks/${height}?full=true`, { signal }), validators()]);
  if (!res.ok) {
    view.append(message("error", res.body.message || "No such block."));
    return;
  }
  const b = res.body;
  const senders = [...new Set(b.txs.map(t => (t.tx && t.tx.sender) || "").filter(Boolean))];
  const found = await Promise.all(senders.map(memberName));
  const names = new Map(senders.map((id, i) => [id, found[i] || (known.get(id) || {}).name]).filter(([, n]) => n));
  const vname = id => (known.get(id) || {}).name || id.slice(0, 10);
  view.append(h("nav", { class: "pager", "aria-label": "Blocks" },
    height > 0 ? h("a", { href: `/block/${height - 1}`, rel: "prev" }, `← block ${height - 1}`) : null,
    h("a", { href: `/block/${height + 1}`, rel: "next" }, `block ${height + 1} →`),
    h("a", { href: "/network" }, "latest blocks")));
  view.append(h("section", { class: "card", "aria-labelledby": "header-title" },
    h("h2", { id: "header-title" }, "Header"),
    facts([
      ["Hash", h("span", { class: "mono" }, b.hash)],
      ["Time", timeEl(b.header.timestamp)],
      ["Proposer", b.header.proposer ? vname(b.header.proposer) : "genesis"],
      ["View", String(b.header.view)],
      ["Previous hash", hashEl(b.header.prev_hash, 24)],
      ["Transactions root", hashEl(b.header.tx_root, 24)],
      ["State root", hashEl(b.header.state_root, 24)],
      ["History root", hashEl(b.header.history_root, 24)],
    ]),
    h("h3", {}, `Certificate: ${b.certificate.signatures.length} of ${known.size} validators`),
    h("ul", { class: "signers" }, b.certificate.signatures.map(s => h("li", { title: s.validator }, vname(s.validator))))));
  view.append(h("section", { class: "card", "aria-labelledby": "txs-title" },
    h("h2", { id: "txs-title" }, `Transactions (${b.tx_count})`),
    b.tx_count
      ? table([{ text: "#", num: true }, "Kind", "Sender", "Outcome", "Id and payload"],
        b.txs.slice(0, SHOWN).map((t, i) => txRow(t, i, names)), { class: "txs" })
      : h("p", { class: "muted" }, "No transactions."),
    b.tx_count > SHOWN ? h("p", { class: "muted" }, `The first ${SHOWN} of ${b.tx_count} are listed.`) : null));
}
