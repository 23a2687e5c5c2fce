// Checking answers in this browser: the genesis file the user pins once (kept in this browser's storage,
// shown with its hash), and the verdict on each answer ("Checked in this browser", or what failed). The
// checks are ./verify/ (docs/proofs.md): with a pinned genesis the page trusts no node for what it marks
// as checked.

import { get } from "./api.js";
import { badge, h } from "./dom.js";
import { render } from "./router.js";
import { toHex } from "./verify/codec.js";
import { Genesis, verifyDocument } from "./verify/verifier.js";

const STORE = "ledger-explorer.genesis";

/** The pinned genesis: {genesis, hash (hex)}, or null. */
export function pinned() {
  let text = null;
  try {
    text = localStorage.getItem(STORE);
  } catch {
    return null; // storage disabled: nothing pinned
  }
  if (!text) return null;
  try {
    const genesis = new Genesis(text);
    return { genesis, hash: toHex(genesis.hash) };
  } catch {
    return null;
  }
}

function pin(text) {
  const genesis = new Genesis(text); // throws if it is not a genesis file
  localStorage.setItem(STORE, text);
  return genesis;
}

/** Check an answer (its exact text) against the pinned genesis: {state: "ok" | "failed" | "unpinned", verdict}. */
export async function check(text) {
  const trust = pinned();
  if (!trust) return { state: "unpinned", verdict: null, trust };
  const verdict = await verifyDocument(text, trust.genesis);
  return { state: verdict.valid ? "ok" : "failed", verdict, trust };
}

const short = hex => `${hex.slice(0, 16)}…`;
const capital = text => text.charAt(0).toUpperCase() + text.slice(1);

/** Choose a genesis file, or take this node's (to compare its hash with one from a party you trust). */
function pinControls(onPinned) {
  const status = h("p", { class: "hint", role: "status" });
  const file = h("input", { type: "file", id: "genesis-file", accept: ".json,application/json" });
  file.addEventListener("change", async () => {
    try {
      pin(await file.files[0].text());
      onPinned();
    } catch (err) {
      status.textContent = `That file is not a genesis file: ${err.message}`;
    }
  });
  const fromNode = h("button", { type: "button", class: "secondary", id: "genesis-from-node" }, "Use this node's genesis");
  fromNode.addEventListener("click", async () => {
    const r = await get("/v1/genesis");
    if (!r.ok) {
      status.textContent = "This node does not serve its genesis file.";
      return;
    }
    pin(r.text);
    onPinned();
  });
  return h("div", { class: "pin" },
    h("label", { for: "genesis-file" }, "This chain's genesis.json"), file, " ", fromNode,
    h("p", { class: "hint" }, "Pin the genesis file once, from a party you trust: this browser then checks every ",
      "answer against it. Taking this node's genesis means trusting it once: compare the hash shown after with ",
      "the one your consortium publishes."),
    status);
}

/** The trust line: which genesis answers are checked against (with its hash), and a way to change it. */
export function trustLine(onChange) {
  const trust = pinned();
  if (!trust) return pinControls(onChange);
  const unpin = h("button", { type: "button", class: "secondary", id: "genesis-unpin" }, "Unpin");
  unpin.addEventListener("click", () => {
    localStorage.removeItem(STORE);
    onChange();
  });
  return h("p", { class: "hint trust" }, "Checked against the genesis file pinned in this browser: chain ",
    h("strong", {}, trust.genesis.chainId), `, ${trust.genesis.validators.size} validators, hash `,
    h("span", { class: "mono genesis-hash", title: trust.hash }, trust.hash), ". ", unpin);
}

/**
 * The verdict on one answer as a banner: green "Checked in this browser", red "Check failed" with the reason,
 * or "Not checked" with the pinning controls. `what` names the answer ("this answer", "the token").
 */
export function verdictEl(result, { id = "verdict", what = "this answer", onChange = () => render(false) } = {}) {
  if (result.state === "ok") {
    const v = result.verdict;
    return h("div", { class: "banner checked", id, role: "status", "data-state": "ok" },
      badge("ok", "Checked in this browser"), " ",
      `Every field of ${what} is what block ${v.height} proves (`, h("span", { class: "mono" }, short(v.blockHash)),
      `, signed by a quorum of the ${result.trust.genesis.validators.size} genesis validators).`,
      v.unproven ? h("span", { class: "muted" }, " Its unproven part is shown as the node sent it.") : null);
  }
  if (result.state === "failed") {
    const v = result.verdict;
    return h("div", { class: "banner error", id, role: "alert", "data-state": "failed", "data-reason": v.reason },
      badge("bad", "Check failed"), " ", `${capital(what)} is not what its proof proves: `,
      h("code", {}, v.reason), ` (${v.message}). Do not rely on it; this node may be faulty or lying.`);
  }
  return h("div", { class: "banner unchecked", id, role: "status", "data-state": "unpinned" },
    badge("warn", "Not checked"), ` ${capital(what)} comes from this node, unchecked.`, pinControls(onChange));
}
