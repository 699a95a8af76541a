//! Long-running operation messages: snapshots of both wire formats, round trips checked.

mod fixtures;

#[test]
fn wire_formats_match_snapshots() {
    fixtures::assert_snapshots("operation", &fixtures::operation::all());
}
