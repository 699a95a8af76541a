//! Disk and snapshot messages: snapshots of both wire formats, round trips checked.

#[test]
fn wire_formats_match_snapshots() {
    crate::fixtures::assert_snapshots("disks", &crate::fixtures::disks::all());
}
