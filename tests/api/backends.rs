//! The suite's own backends: the PostgreSQL URL each test's database gets.

use crate::support::backends::{is_on_this_machine, with_database};

#[test]
fn a_test_database_url_keeps_everything_but_the_database_name() {
    for (server, expected) in [
        (
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://postgres@127.0.0.1:5432/blogql_test_1",
        ),
        (
            "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
            "postgres://postgres@127.0.0.1:5432/blogql_test_1?sslmode=disable",
        ),
        (
            "postgresql://u:p%40ss@[::1]/test?sslmode=disable&application_name=x",
            "postgresql://u:p%40ss@[::1]/blogql_test_1?sslmode=disable&application_name=x",
        ),
        (
            "postgres://postgres@localhost",
            "postgres://postgres@localhost/blogql_test_1",
        ),
        (
            "postgres:///test?host=/var/run/postgresql",
            "postgres:///blogql_test_1?host=/var/run/postgresql",
        ),
    ] {
        assert_eq!(
            with_database(server, "blogql_test_1").as_deref(),
            Ok(expected),
            "{server}"
        );
    }
    for not_postgres in ["mysql://localhost/test", "not a url"] {
        assert!(with_database(not_postgres, "x").is_err(), "{not_postgres}");
    }
}

#[test]
fn only_a_server_on_this_machine_counts_as_local() {
    for local in [
        "postgres://postgres@127.0.0.1:5432/test",
        "postgres://localhost/test",
        "postgres://[::1]:5432/test",
        "postgres:///test?host=/var/run/postgresql",
    ] {
        assert_eq!(is_on_this_machine(local), Ok(true), "{local}");
    }
    for remote in [
        "postgres://db.example.com/test",
        "postgres://10.0.0.5/test",
        "postgres://[2001:db8::1]/test",
    ] {
        assert_eq!(is_on_this_machine(remote), Ok(false), "{remote}");
    }
}
