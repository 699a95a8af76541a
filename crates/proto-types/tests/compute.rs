//! Compute image messages: snapshots of both wire formats, round trips checked.

mod fixtures;

#[test]
fn wire_formats_match_snapshots() {
    fixtures::assert_snapshots("compute", &fixtures::compute::all());
}
