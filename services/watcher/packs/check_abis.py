#!/usr/bin/env python3
"""Checks the watcher's watch-pack ABIs, their SOURCES.md, and the test fixtures that emit them.

    python3 services/watcher/packs/check_abis.py           # from anywhere in the repo
    python3 services/watcher/packs/check_abis.py --table   # also print every signature and hash

Needs Python 3.9+ and one package, pycryptodome (`pip install pycryptodome`), for Keccak-256:
hashlib's `sha3_256` is NIST SHA-3, a different hash that gives wrong topic0s and selectors.

What it checks (exit status 1 on any failure):

1. Every `*.abi.json` here parses as a JSON array of ABI items shaped as solc emits them: events
   with `anonymous: false` and an `indexed` flag on every input; functions with `outputs` and a
   `stateMutability`; `components` on every tuple; no item named twice.
2. Each event's canonical signature (tuples expanded to `(type,type)`) and its topic0
   (keccak-256 of the signature), and each function's selector, are recomputed from the JSON.
3. SOURCES.md: the `### Events` table of each pack's section lists exactly that pack's events,
   each with the same signature and topic0 as recomputed; every other `signature` | `0x hash`
   pair anywhere in SOURCES.md (function selectors, older upstream versions) hashes right.
4. The fixtures in shared/chain-fixtures/artifacts: every event a mock declares under the name
   of a pack event has that event's topic0, the same indexed/non-indexed layout and the same
   parameter names (the only thing that tells the NOR and CSM TargetValidatorsCountChanged
   layouts apart); every function it declares under the name of a pack function has the same selector and output
   types. The mocks written for these packs (MockAllocationManager, MockGovernor,
   MockStakingRouter) must also declare every event of their pack and the listed functions;
   for the older fixtures, pack events they do not declare are only reported.
"""
import json
import re
import sys
from pathlib import Path

try:
    from Crypto.Hash import keccak
except ImportError:
    sys.exit("check_abis: needs pycryptodome for keccak-256: pip install pycryptodome")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ARTIFACTS = ROOT / "shared" / "chain-fixtures" / "artifacts"
SOURCES = HERE / "SOURCES.md"

# artifact name -> (pack, events required, functions required). Events required `None`: the
# older fixtures, which emit only some of their pack's events.
FIXTURES = {
    "MockLendingPool": ("aave-v3-pool", None, []),
    "MockPriceFeed": ("chainlink-feed", None, []),
    "MockFeedProxy": ("chainlink-feed", None, []),
    "MockNodeOperatorsRegistry": ("lido-node-operators-registry", None, []),
    "MockCSModule": ("lido-csm", None, []),
    "MockAllocationManager": (
        "eigenlayer-allocation-manager",
        "all",
        ["modifyAllocations", "getAllocation", "getMaxMagnitude", "DEALLOCATION_DELAY"],
    ),
    "MockGovernor": ("oz-governor", "all", ["state", "proposalEta", "proposalSnapshot", "proposalDeadline"]),
    "MockStakingRouter": (
        "lido-staking-router",
        "all",
        ["getStakingModuleIds", "getNodeOperatorSummary", "updateTargetValidatorsLimits"],
    ),
}

MUTABILITY = {"pure", "view", "nonpayable", "payable"}

failures = []
notes = []


def fail(msg):
    failures.append(msg)


def keccak_hex(text):
    h = keccak.new(digest_bits=256)
    h.update(text.encode())
    return "0x" + h.hexdigest()


def canonical_type(param):
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){t[len('tuple'):]}"
    return t


def signature(item):
    return f"{item['name']}({','.join(canonical_type(p) for p in item['inputs'])})"


def topic0(item):
    return keccak_hex(signature(item))


def selector(item):
    return keccak_hex(signature(item))[:10]


def check_param(where, param, in_event):
    for key in ("name", "type"):
        if not isinstance(param.get(key), str):
            fail(f"{where}: parameter without a string `{key}`: {param}")
            return
    if in_event and not isinstance(param.get("indexed"), bool):
        fail(f"{where}: event parameter `{param['name']}` has no boolean `indexed`")
    if not in_event and "indexed" in param:
        fail(f"{where}: `indexed` on a non-event parameter `{param['name']}`")
    if param["type"].startswith("tuple"):
        comps = param.get("components")
        if not isinstance(comps, list) or not comps:
            fail(f"{where}: tuple `{param['name']}` without components")
            return
        for c in comps:
            check_param(f"{where}.{param['name']}", c, False)
    elif "components" in param:
        fail(f"{where}: `components` on non-tuple `{param['name']}`")


def load_pack(path):
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"{path.name}: not JSON: {e}")
        return []
    if not isinstance(items, list):
        fail(f"{path.name}: not a JSON array")
        return []
    seen = set()
    for item in items:
        where = f"{path.name}: {item.get('name', '?')}"
        kind = item.get("type")
        if kind not in ("event", "function"):
            fail(f"{where}: type {kind!r}, expected event or function")
            continue
        if (kind, item.get("name")) in seen:
            fail(f"{where}: {kind} listed twice")
        seen.add((kind, item.get("name")))
        if not isinstance(item.get("inputs"), list):
            fail(f"{where}: no `inputs` array")
            continue
        for p in item["inputs"]:
            check_param(where, p, kind == "event")
        if kind == "event":
            if item.get("anonymous") is not False:
                fail(f"{where}: event without `anonymous: false`")
            if sum(1 for p in item["inputs"] if p.get("indexed")) > 3:
                fail(f"{where}: more than three indexed parameters")
        else:
            if not isinstance(item.get("outputs"), list):
                fail(f"{where}: function without an `outputs` array")
            else:
                for p in item["outputs"]:
                    check_param(f"{where} (output)", p, False)
            if item.get("stateMutability") not in MUTABILITY:
                fail(f"{where}: stateMutability {item.get('stateMutability')!r}")
    return items


PAIR = re.compile(r"`([A-Za-z_$][A-Za-z0-9_$]*\([^`]*\))`\s*\|\s*`(0x[0-9a-fA-F]+)`")


def parse_sources():
    """Returns ({pack: [(signature, topic0)] from its ### Events table}, [all (signature, hash)])."""
    if not SOURCES.exists():
        fail(f"no {SOURCES.name} next to the packs")
        return {}, []
    text = SOURCES.read_text()
    per_pack = {}
    every = []
    pack = None
    in_events = False
    for line in text.splitlines():
        if line.startswith("## "):
            m = re.search(r"`([a-z0-9-]+)\.abi\.json`", line)
            pack = m.group(1) if m else None
            in_events = False
            if pack:
                per_pack.setdefault(pack, [])
            continue
        if line.startswith("### "):
            in_events = pack is not None and line.strip() == "### Events"
            continue
        for sig, h in PAIR.findall(line):
            every.append((sig, h.lower()))
            if in_events:
                per_pack[pack].append((sig, h.lower()))
    return per_pack, every


def layout(ev):
    return [(canonical_type(p), bool(p.get("indexed"))) for p in ev["inputs"]]


def out_types(fn):
    return [canonical_type(p) for p in fn.get("outputs", [])]


def check_fixtures(packs):
    if not ARTIFACTS.is_dir():
        fail(f"no artifacts directory {ARTIFACTS}")
        return
    for name, (pack, events_required, functions_required) in FIXTURES.items():
        path = ARTIFACTS / f"{name}.json"
        if not path.exists():
            fail(f"fixture {name}: no artifact {path.relative_to(ROOT)}")
            continue
        abi = json.loads(path.read_text())["abi"]
        pack_events = {i["name"]: i for i in packs[pack] if i["type"] == "event"}
        pack_fns = {i["name"]: i for i in packs[pack] if i["type"] == "function"}
        mock_events = {i["name"]: i for i in abi if i["type"] == "event"}
        mock_fns = {i["name"]: i for i in abi if i["type"] == "function"}
        for ev_name, ev in sorted(mock_events.items()):
            up = pack_events.get(ev_name)
            if up is None:
                notes.append(f"{name}: event {signature(ev)} is not in {pack}")
                continue
            if topic0(ev) != topic0(up):
                fail(
                    f"{name}: event {signature(ev)} topic0 {topic0(ev)} != {pack} "
                    f"{signature(up)} {topic0(up)}"
                )
            elif layout(ev) != layout(up):
                fail(f"{name}: event {ev_name} indexed layout {layout(ev)} != {pack} {layout(up)}")
            else:
                names_mock = [p["name"] for p in ev["inputs"]]
                names_up = [p["name"] for p in up["inputs"]]
                if names_mock != names_up:
                    # Same topic0 and layout but other names: for NOR vs CSM
                    # TargetValidatorsCountChanged the names are the only difference.
                    fail(f"{name}: event {ev_name} parameter names {names_mock} != {pack} {names_up}")
                else:
                    print(f"  ok  {name}.{ev_name} {topic0(ev)}")
        for ev_name in sorted(set(pack_events) - set(mock_events)):
            if events_required == "all":
                fail(f"{name}: does not declare {pack} event {signature(pack_events[ev_name])}")
            else:
                notes.append(f"{name}: does not declare {pack} event {ev_name}")
        for fn_name, fn in sorted(mock_fns.items()):
            up = pack_fns.get(fn_name)
            if up is None:
                continue
            if selector(fn) != selector(up):
                fail(f"{name}: {signature(fn)} selector {selector(fn)} != {pack} {signature(up)} {selector(up)}")
            elif out_types(fn) != out_types(up):
                fail(f"{name}: {fn_name} returns {out_types(fn)}, {pack} returns {out_types(up)}")
            else:
                print(f"  ok  {name}.{signature(fn)} {selector(fn)}")
        for fn_name in functions_required:
            if fn_name not in mock_fns:
                fail(f"{name}: does not declare {pack} function {fn_name}")


def main():
    show_table = "--table" in sys.argv[1:]
    packs = {}
    for path in sorted(HERE.glob("*.abi.json")):
        packs[path.name[: -len(".abi.json")]] = load_pack(path)
    if not packs:
        fail(f"no *.abi.json in {HERE}")

    for pack, items in packs.items():
        if show_table:
            print(f"{pack}:")
            for item in items:
                h = topic0(item) if item["type"] == "event" else selector(item)
                print(f"  {item['type']:8} {signature(item)}  {h}")

    recorded, every = parse_sources()
    for sig, h in every:
        want = keccak_hex(sig)
        if h != want and h != want[:10]:
            fail(f"SOURCES.md: {sig} recorded as {h}, keccak-256 gives {want}")
    # Every topic0- or selector-sized hash in SOURCES.md must sit in a checked pair.
    checked = {h for _, h in every}
    text = SOURCES.read_text() if SOURCES.exists() else ""
    for h in re.findall(r"`(0x[0-9a-fA-F]{64}|0x[0-9a-fA-F]{8})`", text):
        if h.lower() not in checked:
            fail(f"SOURCES.md: hash {h} is not written as `signature` | `hash`, so it is unchecked")
    for pack, items in packs.items():
        if pack not in recorded:
            fail(f"SOURCES.md: no section for `{pack}.abi.json`")
            continue
        rows = dict(recorded[pack])
        events = [i for i in items if i["type"] == "event"]
        for ev in events:
            sig = signature(ev)
            if sig not in rows:
                fail(f"SOURCES.md ({pack}): event {sig} not in its ### Events table")
            elif rows[sig] != topic0(ev):
                fail(f"SOURCES.md ({pack}): {sig} recorded {rows[sig]}, computed {topic0(ev)}")
        extra = set(rows) - {signature(e) for e in events}
        for sig in sorted(extra):
            fail(f"SOURCES.md ({pack}): ### Events lists {sig}, which is not an event of the pack")
    for pack in sorted(set(recorded) - set(packs)):
        fail(f"SOURCES.md: section for `{pack}.abi.json`, which does not exist")

    print("fixtures:")
    check_fixtures(packs)

    n_events = sum(1 for items in packs.values() for i in items if i["type"] == "event")
    n_fns = sum(1 for items in packs.values() for i in items if i["type"] == "function")
    for n in notes:
        print(f"note: {n}")
    for f in failures:
        print(f"FAIL: {f}")
    if failures:
        print(f"check_abis: {len(failures)} failure(s)")
        return 1
    print(
        f"check_abis: {len(packs)} packs, {n_events} events, {n_fns} functions, "
        f"{len(every)} hashes in SOURCES.md, {len(FIXTURES)} fixtures: all consistent"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
