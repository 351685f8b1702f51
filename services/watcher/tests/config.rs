//! What the watcher finds wrong in a configuration, reported at file:line:column with the
//! field path, before anything runs.

use steward_config::{Config, Document, MapEnv};

const POOL: &str = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2";

fn load(yaml: &str, dir: &std::path::Path) -> Result<Config, String> {
    let doc = Document::parse(yaml, "steward.yaml", &MapEnv::new()).map_err(|e| e.to_string())?;
    Config::from_document_checked(&doc, dir.to_path_buf(), &steward_watcher::check_config)
        .map_err(|e| e.to_string())
}

fn chain(watch: &str) -> String {
    format!(
        "chains:\n  - name: mainnet\n    chain_id: 1\n    rpc:\n      - url: https://eth.example/v2/KEY\n    watches:\n{watch}"
    )
}

fn error(watch: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    load(&chain(watch), dir.path()).expect_err("the configuration is refused")
}

#[test]
fn a_good_configuration_with_every_pack_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut watches = String::new();
    for (i, pack) in steward_watcher::packs::names().iter().enumerate() {
        watches.push_str(&format!(
            "      - name: w{i}\n        pack: {pack}\n        address: \"0x{:040x}\"\n",
            i + 1
        ));
    }
    let config = load(&chain(&watches), dir.path()).unwrap();
    for i in 0..config.chains.len() {
        steward_watcher::ChainPlan::compile(&config, i).unwrap();
    }
}

#[test]
fn shipped_packs_are_consistent() {
    for pack in steward_watcher::packs::all() {
        steward_watcher::plan::pack_is_consistent(&pack)
            .unwrap_or_else(|e| panic!("pack {}: {e}", pack.name));
    }
}

#[test]
fn an_unknown_pack_is_named_with_the_choices() {
    let e = error(&format!(
        "      - name: aave\n        pack: aave-v2\n        address: \"{POOL}\"\n"
    ));
    assert!(
        e.starts_with("steward.yaml:8:15: chains[0].watches[0].pack: unknown watch pack `aave-v2`; the packs are: aave-v3-pool,"),
        "{e}"
    );
}

#[test]
fn an_address_with_a_bad_checksum_is_refused() {
    // The pool's address with one letter's case flipped.
    let bad = POOL.replace("Bca3", "bca3");
    let e = error(&format!(
        "      - name: aave\n        pack: aave-v3-pool\n        address: \"{bad}\"\n"
    ));
    assert!(
        e.starts_with("steward.yaml:9:18: chains[0].watches[0].address:"),
        "{e}"
    );
    assert!(e.contains("EIP-55 checksum"), "{e}");
    let e = error("      - name: aave\n        pack: aave-v3-pool\n        address: \"0x1234\"\n");
    assert!(
        e.contains("chains[0].watches[0].address: must be an address"),
        "{e}"
    );
}

#[test]
fn an_event_missing_from_the_abi_file_lists_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("token.json"),
        r#"{"abi": [{"type":"event","name":"Transfer","anonymous":false,"inputs":[
            {"name":"from","type":"address","indexed":true},{"name":"to","type":"address","indexed":true},
            {"name":"value","type":"uint256","indexed":false}]}]}"#,
    )
    .unwrap();
    let yaml = chain(&format!(
        "      - name: token\n        address: \"{POOL}\"\n        abi: token.json\n        events: [Transfer, Approval]\n"
    ));
    let e = load(&yaml, dir.path()).unwrap_err();
    assert_eq!(
        e,
        "steward.yaml:10:28: chains[0].watches[0].events[1]: the ABI has no event `Approval`; it has: Transfer"
    );
    let yaml = chain(&format!(
        "      - name: token\n        address: \"{POOL}\"\n        abi: missing.json\n"
    ));
    let e = load(&yaml, dir.path()).unwrap_err();
    assert!(
        e.starts_with("steward.yaml:9:14: chains[0].watches[0].abi: cannot read ABI file"),
        "{e}"
    );
}

#[test]
fn bad_signatures_arguments_and_schedules_are_refused_where_they_are() {
    let e = error(&format!(
        "      - name: t\n        address: \"{POOL}\"\n        events: [\"event Transfer(address indexed from, address to\"]\n"
    ));
    assert!(
        e.starts_with("steward.yaml:9:18: chains[0].watches[0].events[0]: not an event signature"),
        "{e}"
    );
    let e = error(&format!(
        "      - name: t\n        address: \"{POOL}\"\n        calls:\n          - function: \"function balanceOf(address)\"\n"
    ));
    assert!(
        e.contains("chains[0].watches[0].calls[0].function: give the return types"),
        "{e}"
    );
    let e = error(&format!(
        "      - name: t\n        address: \"{POOL}\"\n        calls:\n          - function: \"function balanceOf(address) view returns (uint256)\"\n            args: [\"not-an-address\"]\n"
    ));
    assert!(e.starts_with("steward.yaml:11:13: chains[0].watches[0].calls[0].args: balanceOf(address): argument 1: `not-an-address` is not an address (expected hex digits"), "{e}");
    let e = error(&format!(
        "      - name: t\n        address: \"{POOL}\"\n        calls:\n          - function: \"function totalSupply() view returns (uint256)\"\n            schedule: \"every five minutes\"\n"
    ));
    assert!(e.starts_with("steward.yaml:11:23: chains[0].watches[0].calls[0].schedule: `every five minutes` is not a cron schedule"), "{e}");
}

#[test]
fn pack_parameters_are_checked_by_name_and_type() {
    let e = error(&format!(
        "      - name: aave\n        pack: aave-v3-pool\n        address: \"{POOL}\"\n        params:\n          lenders: [\"0x0000000000000000000000000000000000000001\"]\n"
    ));
    assert!(e.contains("chains[0].watches[0].params.lenders: the pack `aave-v3-pool` has no parameter `lenders`; it has: borrowers"), "{e}");
    let e = error(&format!(
        "      - name: aave\n        pack: aave-v3-pool\n        address: \"{POOL}\"\n        params:\n          borrowers: [\"alice\"]\n"
    ));
    assert!(e.starts_with("steward.yaml:11:23: chains[0].watches[0].params.borrowers[0]: `alice` is not an address"), "{e}");
}

#[test]
fn one_contract_event_in_two_watches_is_refused() {
    let e = error(&format!(
        "      - name: a\n        pack: aave-v3-pool\n        address: \"{POOL}\"\n      - name: b\n        address: \"{POOL}\"\n        events: [\"event Borrow(address indexed reserve, address user, address indexed onBehalfOf, uint256 amount, uint8 interestRateMode, uint256 borrowRate, uint16 indexed referralCode)\"]\n"
    ));
    assert!(
        e.contains("chains[0].watches[1]:") && e.contains("already decoded by watch `a`"),
        "{e}"
    );
}

#[test]
fn chain_level_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(
        "chains:\n  - name: a\n    chain_id: 1\n    rpc: [{url: \"ftp://x\"}]\n",
        dir.path(),
    )
    .unwrap_err();
    assert!(
        e.starts_with("steward.yaml:4:17: chains[0].rpc[0].url: unsupported scheme"),
        "{e}"
    );
    let e = load(
        "chains:\n  - name: a\n    chain_id: 1\n    rpc: [{url: \"http://x\"}]\n    finality: 200\n",
        dir.path(),
    )
    .unwrap_err();
    assert!(
        e.contains("chains[0].finality: 200 confirmations is not less than reorg_window (128)"),
        "{e}"
    );
    let e = load(
        "chains:\n  - name: a\n    chain_id: 1\n    rpc: [{url: \"http://x\"}]\n  - name: b\n    chain_id: 1\n    rpc: [{url: \"http://y\"}]\n",
        dir.path(),
    )
    .unwrap_err();
    assert!(
        e.contains("chains[1].chain_id: another chain has chain id 1"),
        "{e}"
    );
    let e = load(
        "chains:\n  - name: a\n    chain_id: 1\n    rpc: [{url: \"http://x\"}]\n    finality: soon\n",
        dir.path(),
    )
    .unwrap_err();
    assert!(
        e.contains("expected a number of confirmations (`12`), `safe` or `finalized` (got `soon`)"),
        "{e}"
    );
}

#[test]
fn rpc_urls_never_appear_in_errors_or_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "chains:\n  - name: a\n    chain_id: 1\n    rpc: [{url: \"https://eth.example/v2/SECRETKEY123\"}]\n";
    let config = load(yaml, dir.path()).unwrap();
    assert!(
        !config.summary().contains("SECRETKEY123"),
        "{}",
        config.summary()
    );
    assert!(!format!("{config:?}").contains("SECRETKEY123"));
    let bad = "chains:\n  - name: a\n    chain_id: 1\n    rpc: [{url: \"https://eth.example/v2/SECRET KEY 123\"}]\n    finality: soon\n";
    let e = load(bad, dir.path()).unwrap_err();
    assert!(!e.contains("SECRET"), "{e}");
}
