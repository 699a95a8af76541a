//! google.rpc.Status and its error details: snapshots of both wire formats, round trips checked.

#[test]
fn wire_formats_match_snapshots() {
    crate::fixtures::assert_snapshots("rpc", &crate::fixtures::rpc::all());
}
