//! The README is what the portal team and operators code against: its error table must list
//! every error code the service can answer, with the status it answers it with, and nothing else.

use std::collections::BTreeMap;

use spse_totp_api::error::ErrorCode;

const README: &str = include_str!("../../README.md");

/// `code -> status` from the rows of the table under "### Errors" (a row may list several codes).
fn documented_codes() -> BTreeMap<String, u16> {
    let section = README
        .split("### Errors")
        .nth(1)
        .expect("the README has an Errors section");
    let mut codes = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Ok(status) = cells[1].parse::<u16>() else {
            continue; // the header and its rule
        };
        for code in cells[2].split('`').skip(1).step_by(2) {
            let previous = codes.insert(code.to_owned(), status);
            assert!(previous.is_none(), "{code} is listed twice");
        }
    }
    codes
}

#[test]
fn the_error_table_lists_every_code_with_its_status() {
    let documented = documented_codes();
    let served: BTreeMap<String, u16> = ErrorCode::ALL
        .iter()
        .map(|code| (code.as_str().to_owned(), code.status().as_u16()))
        .collect();
    let missing: Vec<_> = served
        .iter()
        .filter(|(code, status)| documented.get(*code) != Some(status))
        .collect();
    let unknown: Vec<_> = documented
        .keys()
        .filter(|code| !served.contains_key(*code))
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README error table: missing or with another status {missing:?}; not a code {unknown:?}"
    );
}
