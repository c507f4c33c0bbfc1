//! The binary refuses bad configuration before doing anything, naming every bad setting.

use std::process::Command;

fn bq_backup() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bq-backup"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn serve_refuses_an_invalid_setting_and_names_it() {
    let out = bq_backup()
        .arg("serve")
        .env("PORT", "http")
        .env("BQB_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PORT: `http` is not valid"), "{stderr}");
    assert!(stderr.contains("BQB_LOG_FORMAT"), "{stderr}");
}

#[test]
fn serve_refuses_an_unknown_setting_and_names_it() {
    let out = bq_backup()
        .arg("serve")
        .env("BQB_MAX_PARALEL_TABLES", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BQB_MAX_PARALEL_TABLES: unknown setting"),
        "{stderr}"
    );
}

#[test]
fn config_prints_every_setting() {
    let out = bq_backup().arg("config").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for v in bq_backup::config::VARIABLES {
        assert!(stdout.contains(v.name), "{} missing", v.name);
    }
}

#[test]
fn the_configuration_reference_holds_the_table_the_code_generates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let table = bq_backup::config::settings_markdown();
    let stale: Vec<&str> = table.lines().filter(|l| !doc.contains(l)).collect();
    assert!(
        doc.contains(&table),
        "docs/configuration.md's settings table differs from the one `bq-backup config` prints \
         (each module's settings.rs, registered in src/config.rs VARIABLES); replace it with that output. Rows missing or changed:\n{}",
        stale.join("\n")
    );
}
