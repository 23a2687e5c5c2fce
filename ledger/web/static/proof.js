// The proof panel of an answer: the block, its signers, the Ethereum anchor, and the proof as a file.

import { get, pathOf, resolveUrl, validators } from "./api.js";
import { check, pinned, trustLine } from "./check.js";
import { badge, facts, h, timeEl } from "./dom.js";
import { render } from "./router.js";

function blockLink(height) {
  return h("a", { href: `/block/${height}` }, `block ${height}`);
}

function keyText(hex) {
  // State keys are ASCII ("id/<identifier>"); show them as text when they decode.
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(hex.match(/../g) || [], b => parseInt(b, 16)));
  } catch {
    return hex;
  }
}

function fileName(key, height) {
  return `proof-${key.replace(/[^A-Za-z0-9._-]+/g, "_")}-h${height}.json`;
}

function anchorDetails(anchor) {
  return facts([
    ["Chain id", h("span", { class: "mono anchor-chain" }, String(anchor.eth_chain_id))],
    ["Transaction", h("span", { class: "mono anchor-tx" }, anchor.tx_hash.startsWith("0x") ? anchor.tx_hash : `0x${anchor.tx_hash}`)],
    ["Contract", h("span", { class: "mono" }, anchor.contract)],
    ["Ethereum block", String(anchor.eth_block)],
  ]);
}

function downloadLink(text, file, id, label, signal) {
  const href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  signal.addEventListener("abort", () => URL.revokeObjectURL(href));
  return h("a", { class: "button", href, download: file, id }, label);
}

async function anchorFacts(proof, key, updatedHeight, signal) {
  const anchor = proof.anchor;
  if (anchor) {
    const covers = anchor.height === proof.height
      ? ["this block itself was anchored"]
      : ["covers this block through a history proof of ", String(anchor.history_proof.length), " hashes"];
    return [
      h("p", { class: "anchor-status" }, badge("ok", "Anchored"), " in Ethereum at ledger ",
        h("a", { href: `/block/${anchor.height}`, class: "anchor-height" }, `block ${anchor.height}`),
        "; ", ...covers, "."),
      anchorDetails(anchor),
    ];
  }
  const latest = await get("/v1/anchors/latest", { signal });
  if (!latest.ok) {
    return [h("p", { class: "anchor-status" }, badge("plain", "Not anchored"),
      " This ledger has recorded no Ethereum anchor yet.")];
  }
  const a = latest.body;
  if (a.height < proof.height) {
    // An anchor never covers the head (its receipt lands in a later block). A record unchanged since
    // an anchored block is proven, as it is now, by the answer at that block, which reaches the anchor.
    const same = updatedHeight !== null && updatedHeight <= a.height;
    if (same) {
      const q = new URLSearchParams({ proof: "true", anchor: "true", height: String(a.height) });
      const anchored = await get(`/v1/resolve/${pathOf(key)}?${q}`, { signal });
      const section = anchored.ok && anchored.body.proof && anchored.body.proof.anchor;
      if (section) {
        const result = await check(anchored.text);
        const checked = { ok: badge("ok", "checked in this browser"), failed: badge("bad", "check failed"),
          unpinned: badge("warn", "not checked") }[result.state];
        return [
          h("p", { class: "anchor-status", "data-check": result.state }, badge("ok", "Anchored"), " ", checked,
            " This record has not changed since ",
            blockLink(updatedHeight), "; as of ",
            h("a", { href: resolveUrl(key, { height: a.height }), class: "anchor-height" }, `block ${a.height}`),
            " it is proven up to an Ethereum anchor."),
          anchorDetails(section),
          h("p", { class: "download" }, downloadLink(anchored.text, fileName(key, a.height), "download-anchored-proof",
            `Download the anchored proof (block ${a.height})`, signal)),
        ];
      }
    }
    return [h("p", { class: "anchor-status" }, badge("warn", "Not anchored yet"),
      ` Block ${proof.height} is newer than the latest Ethereum anchor (ledger block ${a.height}, chain ${a.eth_chain_id}, `,
      h("span", { class: "mono" }, a.tx_hash), "). ",
      h("a", { href: resolveUrl(key, { height: a.height }), class: "anchored-answer" }, `See the answer as of anchored height ${a.height}`),
      ".")];
  }
  return [h("p", { class: "anchor-status" }, badge("plain", "No anchor section"),
    " Ask again for the answer to include the anchor path.")];
}

/**
 * The proof panel. `text` is the node's answer exactly as received: that is the file offered for
 * download, which `ledger verify FILE --genesis GENESIS` checks (the answer carries its proof). `result`
 * is this browser's check of it (check.js): the panel says whether the facts it lists were checked here.
 */
export async function proofPanel({ proof, text, key, updatedHeight = null, signal, result }) {
  const [known, anchorPart] = await Promise.all([validators(), anchorFacts(proof, key, updatedHeight, signal)]);
  const signatures = proof.certificate.signatures || [];
  const first = proof.entries[0];
  const present = first.value !== null;
  const name = id => (known.get(id) || {}).name || "unknown validator";
  const file = fileName(key, proof.height);
  const state = result ? result.state : "unpinned";
  const claim = [present ? "The record is " : "The absence of this identifier is ",
    `committed in the state of block ${proof.height}, whose header ${signatures.length} of ${known.size || "?"} validators signed`];
  const verdict = {
    ok: [...claim, ": checked in this browser."],
    failed: ["The node says: ", ...claim, ". That failed its check in this browser."],
    unpinned: ["The node says: ", ...claim, ". Not checked in this browser yet."],
  }[state];
  return h("section", { class: `card proof ${state}`, id: "proof", "aria-labelledby": "proof-title", "data-state": state },
    h("h2", { id: "proof-title" }, "Proof"),
    h("p", { class: "verdict" }, verdict),
    pinned() ? trustLine(() => render(false))
      : h("p", { class: "hint" }, "Pin this chain's genesis file (at the top of the page) to check it in this browser."),
    facts([
      ["Block", blockLink(proof.height)],
      ["Block hash", h("span", { class: "mono block-hash" }, proof.certificate.block_hash)],
      ["Block time", timeEl(proof.header.timestamp)],
      ["State root", h("span", { class: "mono" }, proof.header.state_root)],
      ["Proven key", h("span", { class: "mono" }, keyText(first.key))],
      ["Also proven", proof.entries.length > 1 ? proof.entries.slice(1).map(e => h("div", { class: "mono" }, keyText(e.key),
        e.value === null ? " (absent)" : "")) : null],
      ["Merkle path", `${(first.smt.siblings || []).length} sibling hashes up to the state root`],
    ]),
    h("h3", {}, "Signed by"),
    h("ul", { class: "signers" }, signatures.map(s =>
      h("li", { "data-validator": s.validator }, h("strong", {}, name(s.validator)), " ",
        h("span", { class: "mono muted", title: s.validator }, s.validator.slice(0, 12))))),
    h("h3", {}, "Ethereum anchor"),
    anchorPart,
    h("p", { class: "hint" }, "This browser checks the path to the anchored block; that the anchored block's hash is in ",
      "the contract on Ethereum is checked by ", h("code", {}, "ledger verify FILE --genesis genesis.json --rpc URL"), "."),
    h("p", { class: "download" },
      downloadLink(text, file, "download-proof", `Download this proof (block ${proof.height}, JSON)`, signal)),
    h("p", { class: "hint" }, "Check it offline, trusting only the genesis file: ",
      h("code", {}, `ledger verify ${file} --genesis genesis.json`)),
  );
}
