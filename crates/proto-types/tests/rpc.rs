//! google.rpc.Status and its error details: snapshots of both wire formats, round trips checked.

mod fixtures;

#[test]
fn wire_formats_match_snapshots() {
    fixtures::assert_snapshots("rpc", &fixtures::rpc::all());
}
