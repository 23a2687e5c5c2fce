"""`ledger credits issue|withdraw|transfer|balance` and `ledger market list|unlist|buy|offer|accept|withdraw|
licence-offer|licence-buy|licence-terms|appraise|appraisals|show|prices`: settlement credits, trading tokens and
licences for them, appraisals."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ledger.cli.common import (
    EXIT_USAGE,
    CliError,
    Subcommands,
    add_command,
    add_group,
    add_read_options,
    add_write_options,
    fetch,
    member_id,
    print_json,
    signer,
    signing_key,
)
from ledger.cli.governance import proposal_fields
from ledger.client import LedgerError
from ledger.codec import encode
from ledger.market.appraisals import Appraise
from ledger.market.credits import MAX_AMOUNT, CreditsIssue, CreditsTransfer, CreditsWithdraw
from ledger.market.licences import (
    MAX_DURATION_MS,
    MAX_SALES,
    LicenceBuy,
    LicenceOfferMake,
    compute_licence_offer_id,
)
from ledger.market.licences import (
    MAX_OFFER_TERM_MS as LICENCE_OFFER_TERM_MS,
)
from ledger.market.trading import (
    MAX_BPS,
    MAX_TERM_MS,
    MarketBuy,
    MarketList,
    MarketOffer,
    MarketUnlist,
    OfferRef,
    compute_offer_id,
)
from ledger.nft.assets import KINDS
from ledger.nft.rights import compute_licence_id
from ledger.timefmt import parse_time_ms

DAY_MS = 86_400_000
CREDITS_DETAILS = """\
Credits are whole numbers that stand for money held outside the ledger. The treasury (a member with the
treasury role, on the devnet the admin) issues and withdraws them; with a governance threshold above one
that makes a proposal which other admins approve (`ledger governance approve ID`). Holders transfer their
own available credits; credits held in escrow for open offers cannot be spent. Members are names, devnet
member names, key files or ids."""
MARKET_DETAILS = """\
The owner of a token lists it at a price in credits until a time; a buyer buys it in one transaction that
moves the credits and the token together, or nothing. Anyone but the owner may offer a price, held in escrow
from its credits until the owner accepts, the buyer withdraws, or the offer expires (the escrow returns
within the hour after its expiry). A token minted with a royalty (`ledger asset mint ... --royalty BPS`)
pays that share of every later sale's price to its creator. Locked and leased tokens cannot be listed or
sold, and a listing goes stale when the token changes (a transfer, lease or lock). A token's owner (or the
holder of a sublicensable licence) also offers licences for sale: each purchase pays and grants one. Writes
are signed with --key (default: the devnet's first issuer). Times are ISO 8601 (a naive time means UTC) or
milliseconds."""


def parse_amount(text: str, what: str = "AMOUNT") -> int:
    try:
        amount = int(text)
    except ValueError:
        amount = 0
    if not 1 <= amount <= MAX_AMOUNT:
        raise CliError(f"{what} must be a whole number of credits from 1 to {MAX_AMOUNT}, not {text!r}", EXIT_USAGE)
    return amount


def parse_sha256(text: str, option: str = "--terms-hash") -> bytes:
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise CliError(f"{option} takes a sha256 as 64 hex digits", EXIT_USAGE)
    return digest


def parse_bps(text: str, option: str = "--royalty") -> int:
    try:
        bps = int(text)
    except ValueError:
        bps = -1
    if not 1 <= bps <= MAX_BPS:
        raise CliError(f"{option} takes basis points from 1 to {MAX_BPS} (500 = 5%), not {text!r}", EXIT_USAGE)
    return bps


def expiry(text: str | None, default_days: int, longest_ms: int = MAX_TERM_MS) -> int:
    """Milliseconds since the epoch from --until (ISO 8601 or ms), or `default_days` from now."""
    if text is None:
        return int(time.time() * 1000) + default_days * DAY_MS
    try:
        at = parse_time_ms(text)
    except ValueError as exc:
        raise CliError(f"--until takes ISO 8601 or milliseconds, not {text!r}", EXIT_USAGE) from exc
    if at > int(time.time() * 1000) + longest_ms:
        raise CliError(f"--until lies more than {longest_ms // DAY_MS} days ahead", EXIT_USAGE)
    return at


def _done(result: dict[str, Any], **fields: Any) -> None:
    print_json({**fields, "tx_id": result["tx_id"], "height": result["height"]})


# --- credits -------------------------------------------------------------------------------------


def cmd_issue(args: argparse.Namespace) -> int:
    to, amount = member_id(args.member, args), parse_amount(args.amount)
    result = signer(args, "treasury").send("credits.issue", CreditsIssue(to, amount))
    _done(result, member=to, issued=amount, **proposal_fields(args, result))
    return 0


def cmd_withdraw_credits(args: argparse.Namespace) -> int:
    member, amount = member_id(args.member, args), parse_amount(args.amount)
    result = signer(args, "treasury").send("credits.withdraw", CreditsWithdraw(member, amount))
    _done(result, member=member, withdrawn=amount, **proposal_fields(args, result))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    to, amount = member_id(args.member, args), parse_amount(args.amount)
    sender = signer(args, "issuer")
    result = sender.send("credits.transfer", CreditsTransfer(to, amount))
    _done(result, **{"from": sender.member_id, "to": to, "amount": amount})
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    member = member_id(args.member, args) if args.member else signing_key(args, "issuer").id
    print_json(fetch(args, f"/v1/credits/{member}", height=args.height, proof="true" if args.proof else None))
    return 0


# --- market --------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    price, until = parse_amount(args.price, "--price"), expiry(args.until, 30)
    result = signer(args, "issuer").send("market.list", MarketList(args.token, price, until))
    _done(result, token=args.token, price=price, expires=until)
    return 0


def cmd_unlist(args: argparse.Namespace) -> int:
    result = signer(args, "issuer").send("market.unlist", MarketUnlist(args.token))
    _done(result, token=args.token, listed=False)
    return 0


def cmd_buy(args: argparse.Namespace) -> int:
    if args.price is not None:
        price = parse_amount(args.price, "--price")
    else:
        try:
            shown = fetch(args, f"/v1/market/listings/{args.token}")
        except LedgerError as exc:
            raise CliError(f"cannot buy {args.token}: {exc.message}") from exc
        if shown["listing"] is None:
            raise CliError(f"{args.token} is not listed")
        price = int(shown["listing"]["price"])
    buyer = signer(args, "issuer")
    result = buyer.send("market.buy", MarketBuy(args.token, price))
    _done(result, token=args.token, price=price, owner=buyer.member_id)
    return 0


def cmd_offer(args: argparse.Namespace) -> int:
    price, until = parse_amount(args.price, "--price"), expiry(args.until, 7)
    result = signer(args, "issuer").send("market.offer", MarketOffer(args.token, price, until))
    _done(result, offer_id=compute_offer_id(bytes.fromhex(result["tx_id"])), token=args.token, price=price,
          expires=until)
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    result = signer(args, "issuer").send("market.accept", OfferRef(args.offer.lower()))
    _done(result, offer_id=args.offer.lower(), status="accepted")
    return 0


def cmd_withdraw_offer(args: argparse.Namespace) -> int:
    result = signer(args, "issuer").send("market.withdraw_offer", OfferRef(args.offer.lower()))
    _done(result, offer_id=args.offer.lower(), status="withdrawn")
    return 0


def cmd_licence_offer(args: argparse.Namespace) -> int:
    if args.private:
        return private_offer(args)
    if args.buyer or args.terms:
        raise CliError("--buyer and --terms are for a --private offer", EXIT_USAGE)
    price, until = parse_amount(args.price, "--price"), expiry(args.until, 30, LICENCE_OFFER_TERM_MS)
    if not 1 <= args.days <= MAX_DURATION_MS // DAY_MS:
        raise CliError(f"--days must be 1 to {MAX_DURATION_MS // DAY_MS}", EXIT_USAGE)
    if not 1 <= args.max <= MAX_SALES:
        raise CliError(f"--max must be 1 to {MAX_SALES}", EXIT_USAGE)
    terms_hash = parse_sha256(args.terms_hash) if args.terms_hash else b""
    payload = LicenceOfferMake(args.token, args.parent or "", tuple(args.purpose), args.days * DAY_MS,
                               args.sublicensable, args.terms_uri or "", terms_hash, price, args.max, until,
                               parse_bps(args.resale_share, "--resale-share") if args.resale_share else 0)
    result = signer(args, "issuer").send("market.licence_offer", payload)
    _done(result, offer_id=compute_licence_offer_id(bytes.fromhex(result["tx_id"])), token=args.token,
          purposes=sorted(set(args.purpose)), days=args.days, price=price, max_sales=args.max, expires=until)
    return 0


def private_offer(args: argparse.Namespace) -> int:
    """A licence offer to one buyer whose price and terms are sealed to the two parties' encryption keys."""
    from ledger.client import LedgerClient
    from ledger.market.private_offers import (
        PrivateLicenceOfferMake,
        PrivateTerms,
        compute_private_offer_id,
        terms_associated_data,
        terms_commitment,
    )
    from ledger.sealed import seal

    price, until = parse_amount(args.price, "--price"), expiry(args.until, 30, LICENCE_OFFER_TERM_MS)
    if not args.buyer:
        raise CliError("a --private offer names its --buyer", EXIT_USAGE)
    if args.max != 1 or args.resale_share or args.terms_uri or args.terms_hash:
        raise CliError("a --private offer sells one licence: no --max, --resale-share, --terms-uri or --terms-hash "
                       "(give the terms with --terms)", EXIT_USAGE)
    if not 1 <= args.days <= MAX_DURATION_MS // DAY_MS:
        raise CliError(f"--days must be 1 to {MAX_DURATION_MS // DAY_MS}", EXIT_USAGE)
    seller = signer(args, "issuer")
    buyer = member_id(args.buyer, args)
    keys = []
    with LedgerClient(seller.client.url) as client:
        for who in (seller.member_id, buyer):
            try:
                keys.append(bytes.fromhex(client.get(f"/v1/members/{who}/enc-key")["enc_public_key"]))
            except LedgerError as exc:
                raise CliError(f"member {who} has no encryption key: register one with `ledger member enc-key` "
                               f"({exc.message})") from exc
    terms = PrivateTerms(price, args.terms or "", os.urandom(32))
    sealed = seal(encode(terms), keys, terms_associated_data(seller.chain_id, args.token, seller.member_id, buyer))
    payload = PrivateLicenceOfferMake(args.token, args.parent or "", buyer, tuple(args.purpose), args.days * DAY_MS,
                                      args.sublicensable, until, terms_commitment(terms), sealed)
    result = seller.send("market.licence_offer_private", payload)
    _done(result, offer_id=compute_private_offer_id(bytes.fromhex(result["tx_id"])), token=args.token, buyer=buyer,
          purposes=sorted(set(args.purpose)), days=args.days, commitment=terms_commitment(terms).hex(),
          expires=until, private=True)
    return 0


def cmd_licence_terms(args: argparse.Namespace) -> int:
    """Open a private licence offer's sealed price and terms with a party's encryption key."""
    from ledger.codec import decode
    from ledger.market.private_offers import PrivateTerms, terms_associated_data, terms_commitment
    from ledger.sealed import SealError, open_sealed

    try:
        private = bytes.fromhex(Path(args.enc_key).read_text().strip())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the encryption key {args.enc_key}: {exc}", EXIT_USAGE) from exc
    offer = fetch(args, f"/v1/market/private-licence-offers/{args.offer.lower()}")["offer"]
    tx = fetch(args, f"/v1/tx/{offer['tx_id']}")["tx"]
    chain_id = fetch(args, "/v1/status")["chain_id"]
    bound = terms_associated_data(chain_id, offer["token"], offer["seller"], offer["buyer"])
    try:
        terms = decode(PrivateTerms, open_sealed(bytes.fromhex(tx["payload"]["sealed_terms"]), private, bound))
    except SealError as exc:
        raise CliError(f"cannot open the terms: {exc}") from exc
    if terms_commitment(terms).hex() != offer["commitment"]:
        raise CliError("the sealed terms do not match the offer's commitment: do not rely on them")
    print_json({"offer_id": args.offer.lower(), "price": terms.price, "terms": terms.terms, "salt": terms.salt.hex(),
                "commitment": offer["commitment"], "matches_commitment": True})
    return 0


def cmd_licence_buy(args: argparse.Namespace) -> int:
    offer_id = args.offer.lower()
    if args.private:
        from ledger.market.private_offers import PrivateLicenceBuy

        buyer = signer(args, "issuer")
        result = buyer.send("market.licence_buy_private", PrivateLicenceBuy(offer_id))
        _done(result, offer_id=offer_id, holder=buyer.member_id,
              licence_id=compute_licence_id(bytes.fromhex(result["tx_id"])), private=True)
        return 0
    if args.price is not None:
        price = parse_amount(args.price, "--price")
    else:
        try:
            price = int(fetch(args, f"/v1/market/licence-offers/{offer_id}")["offer"]["price"])
        except LedgerError as exc:
            raise CliError(f"cannot buy licence offer {offer_id}: {exc.message}") from exc
    buyer = signer(args, "issuer")
    result = buyer.send("market.licence_buy", LicenceBuy(offer_id, price))
    _done(result, offer_id=offer_id, price=price, holder=buyer.member_id,
          licence_id=compute_licence_id(bytes.fromhex(result["tx_id"])))
    return 0


def cmd_appraise(args: argparse.Namespace) -> int:
    value = parse_amount(args.value, "--value")
    try:
        date = parse_time_ms(args.date) if args.date else int(time.time() * 1000)
    except ValueError as exc:
        raise CliError(f"--date takes ISO 8601 or milliseconds, not {args.date!r}", EXIT_USAGE) from exc
    payload = Appraise(args.token, value, args.method, date, parse_sha256(args.evidence, "--evidence"))
    result = signer(args, "appraiser").send("market.appraise", payload)
    _done(result, token=args.token, value=value, method=args.method, date=date)
    return 0


def cmd_appraisals(args: argparse.Namespace) -> int:
    print_json(fetch(args, f"/v1/market/appraisals/{args.token}", height=args.height,
                     proof="true" if args.proof else None))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print_json(fetch(args, f"/v1/market/listings/{args.token}", height=args.height,
                     proof="true" if args.proof else None))
    return 0


def cmd_prices(args: argparse.Namespace) -> int:
    print_json(fetch(args, "/v1/market/prices", token=args.token, kind=args.kind, purpose=args.purpose,
                     recent=args.recent))
    return 0


def _credits_commands(sub: Subcommands) -> None:
    group = add_group(sub, "credits", "settlement credits: issue, withdraw, transfer, balance", CREDITS_DETAILS)
    for name, summary, func in (("issue", "issue credits to a member (treasury; an admin action)", cmd_issue),
                                ("withdraw", "take credits out of a member's available balance (treasury; an admin "
                                             "action)", cmd_withdraw_credits),
                                ("transfer", "move your available credits to another member", cmd_transfer)):
        p = add_command(group, name, summary)
        p.add_argument("member", metavar="MEMBER", help="member name, devnet member name, key file or id")
        p.add_argument("amount", metavar="AMOUNT", help="whole credits")
        add_write_options(p)
        p.set_defaults(func=func)
    p = add_command(group, "balance", "print a member's credits as JSON: available, and held in escrow")
    p.add_argument("member", metavar="MEMBER", nargs="?", help="whose (default: the --key's member)")
    p.add_argument("--height", type=int, help="as of this committed height (default: the head)")
    p.add_argument("--proof", action="store_true", help="include the state proof of the balance (`ledger verify` "
                                                         "checks the answer's `proof` document)")
    p.add_argument("--key", help="whose balance, when MEMBER is not given (default: the devnet's first issuer)")
    add_read_options(p)
    p.set_defaults(func=cmd_balance)


def add_commands(sub: Subcommands) -> None:
    _credits_commands(sub)
    group = add_group(sub, "market", "trade tokens and licences for credits: list, buy, offer, accept, licence-offer, "
                      "licence-buy, prices", MARKET_DETAILS)
    p = add_command(group, "list", "list your token at a price (replaces your earlier listing of it)")
    p.add_argument("token", help="the token id")
    p.add_argument("--price", required=True, help="whole credits")
    p.add_argument("--until", help="when the listing ends, ISO 8601 (default: 30 days; at most 90)")
    add_write_options(p)
    p.set_defaults(func=cmd_list)
    p = add_command(group, "unlist", "remove a listing (its lister or the token's owner)")
    p.add_argument("token", help="the token id")
    add_write_options(p)
    p.set_defaults(func=cmd_unlist)
    p = add_command(group, "buy", "buy a listed token at its listed price",
                    "Without --price the node's listing is read first; the price goes into the transaction, so "
                    "a seller who changes it meanwhile makes the purchase fail rather than cost more.")
    p.add_argument("token", help="the token id")
    p.add_argument("--price", help="the listed price you agree to (default: the listing's, as read now)")
    add_write_options(p)
    p.set_defaults(func=cmd_buy)
    p = add_command(group, "offer", "offer a price for a token; the credits are held in escrow",
                    "Prints the offer id (`offer_id`), which the owner accepts with `ledger market accept`.")
    p.add_argument("token", help="the token id")
    p.add_argument("--price", required=True, help="whole credits")
    p.add_argument("--until", help="when the offer expires, ISO 8601 (default: 7 days; at most 90)")
    add_write_options(p)
    p.set_defaults(func=cmd_offer)
    p = add_command(group, "accept", "accept an offer for your token: it is paid out of the offer's escrow")
    p.add_argument("offer", metavar="OFFER_ID", help="the offer id (64 hex digits)")
    add_write_options(p)
    p.set_defaults(func=cmd_accept)
    p = add_command(group, "withdraw", "withdraw your open offer; its escrow returns to your credits")
    p.add_argument("offer", metavar="OFFER_ID", help="the offer id (64 hex digits)")
    add_write_options(p)
    p.set_defaults(func=cmd_withdraw_offer)
    p = add_command(group, "licence-offer", "offer licences on a token for sale (its owner, or a sublicensable "
                    "holder with --parent)",
                    "Each purchase grants the buyer a licence for the purposes, valid --days from the purchase: a "
                    "root of the token's licence tree, or with --parent a sublicence of that licence (within its "
                    "purposes and validity). Prints the offer id (`offer_id`) that `ledger market licence-buy` "
                    "takes.")
    p.add_argument("token", help="the token id")
    p.add_argument("--purpose", required=True, action="append", help="a purpose (repeat for more)")
    p.add_argument("--days", required=True, type=int, help="how long each licence sold is valid")
    p.add_argument("--price", required=True, help="whole credits per licence")
    p.add_argument("--max", type=int, default=1, help="how many licences may be sold (default 1)")
    p.add_argument("--sublicensable", action="store_true", help="the licences sold may be sublicensed")
    p.add_argument("--parent", help="sell sublicences of this licence of yours (its id)")
    p.add_argument("--resale-share", metavar="BPS", help="each licence sold passes this share (basis points) of its "
                   "sublicences' sales up to you, and you pass yours further up the tree")
    p.add_argument("--until", help="when the offer ends, ISO 8601 (default: 30 days; at most 365)")
    p.add_argument("--terms-uri", help="URI of the licence terms")
    p.add_argument("--terms-hash", help="sha256 of the terms, 64 hex digits")
    p.add_argument("--private", action="store_true", help="one licence to --buyer: the price and --terms are sealed "
                   "to the two parties' encryption keys (`ledger member enc-key`); the state holds only a salted "
                   "commitment, and no credits move on the ledger (they would show the price): settle it "
                   "between you")
    p.add_argument("--buyer", help="with --private: the one member the offer is made to")
    p.add_argument("--terms", help="with --private: the terms' text, sealed with the price")
    add_write_options(p)
    p.set_defaults(func=cmd_licence_offer)
    p = add_command(group, "licence-terms", "open a private licence offer's price and terms (a party's key)",
                    "Reads the offer and its offering transaction, opens the sealed terms with --enc-key (the file "
                    "`ledger member enc-key --generate` wrote) and checks them against the offer's commitment.")
    p.add_argument("offer", metavar="OFFER_ID", help="the private licence offer id (64 hex digits)")
    p.add_argument("--enc-key", required=True, help="your X25519 private key file")
    add_read_options(p)
    p.set_defaults(func=cmd_licence_terms)
    p = add_command(group, "licence-buy", "buy a licence from a licence offer: pays and grants it together",
                    "Prints the licence id (`licence_id`); `ledger rights check` then allows its purposes.")
    p.add_argument("offer", metavar="OFFER_ID", help="the licence offer id (64 hex digits)")
    p.add_argument("--price", help="the offer's price you agree to (default: the offer's, as read now)")
    p.add_argument("--private", action="store_true", help="take a private licence offer made to you (no credits "
                   "move on the ledger)")
    add_write_options(p)
    p.set_defaults(func=cmd_licence_buy)
    p = add_command(group, "appraise", "record an appraisal of a token (appraiser role)",
                    "The value in credits as of --date, the method, and the sha256 of the evidence (which stays "
                    "off the ledger). Signed by the devnet's first appraiser unless --key is given.")
    p.add_argument("token", help="the token id")
    p.add_argument("--value", required=True, help="whole credits")
    p.add_argument("--method", required=True, help="how the value was found, e.g. 'income approach'")
    p.add_argument("--evidence", required=True, help="sha256 of the evidence, 64 hex digits")
    p.add_argument("--date", help="the date the value is as of, ISO 8601 (default: now)")
    add_write_options(p)
    p.set_defaults(func=cmd_appraise)
    p = add_command(group, "appraisals", "print a token's appraisals as JSON, newest first")
    p.add_argument("token", help="the token id")
    p.add_argument("--height", type=int, help="as of this committed height (default: the head)")
    p.add_argument("--proof", action="store_true", help="include the state proof of the appraisals listed")
    add_read_options(p)
    p.set_defaults(func=cmd_appraisals)
    p = add_command(group, "show", "print a token's listing, royalty and open offers as JSON")
    p.add_argument("token", help="the token id")
    p.add_argument("--height", type=int, help="as of this committed height (default: the head)")
    p.add_argument("--proof", action="store_true", help="include the state proof of the listing, royalty and token")
    add_read_options(p)
    p.set_defaults(func=cmd_show)
    p = add_command(group, "prices", "print price statistics as JSON: last, median, VWAP per window",
                    "Windows 24h, 7d, 30d and all, ending at the head block's time; with the latest sales.")
    p.add_argument("--token", help="the sales of one token")
    p.add_argument("--kind", choices=KINDS, help="the sales of one asset kind (with --token: the token's, if of that "
                   "kind)")
    p.add_argument("--purpose", help="the licences sold for this purpose (instead of token sales)")
    p.add_argument("--recent", type=int, default=20, choices=range(0, 101), metavar="N",
                   help="list the latest N sales (0 to 100, default 20)")
    add_read_options(p)
    p.set_defaults(func=cmd_prices)
