//! The `yc-images` command line against a running server with an IAM file: every command, in
//! each output format, and failures as one line with their code and a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{
    Server, seed_compute_image, seed_disk, seed_registry, seed_snapshot, start_seeded, write_iam,
    write_layout,
};
use serde_json::{Value, json};

const FOLDER: &str = "b1gteam";
const IMAGE: &str = "fd8cliimage000000000";
const REGISTRY: &str = "crpcliregistry000000";
const EDITOR: &str = "ajeeditor00000000000";
const DISK: &str = "fhmclidisk0000000000";
const SNAPSHOT: &str = "fd8clisnapshot000000";

fn start(dir: &Path, extra: &[&str]) -> Server {
    let iam = dir.join("iam.json");
    write_iam(
        &iam,
        &[
            (EDITOR, "editor-token", FOLDER, "editor"),
            ("ajeviewer00000000000", "viewer-token", FOLDER, "viewer"),
        ],
    );
    let seed = dir.join("seed");
    seed_registry(&seed, REGISTRY, FOLDER, "cli");
    seed_compute_image(&seed, IMAGE, FOLDER, "base");
    seed_disk(&seed, DISK, FOLDER, "boot", json!({}));
    seed_snapshot(&seed, SNAPSHOT, FOLDER, "nightly", json!({}));
    start_seeded(dir, &iam, &seed, extra)
}

/// `yc-images <args>` against `server` with `token`.
fn run(server: &Server, token: &str, args: &[&str]) -> Output {
    run_at(&server.url(), token, args)
}

/// `yc-images <args>` against `endpoint` with `token`.
fn run_at(endpoint: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yc-images"))
        .args(args)
        .env("YC_IMAGES_ENDPOINT", endpoint)
        .env("YC_IMAGES_TOKEN", token)
        .output()
        .unwrap()
}

/// What a command that must succeed printed.
fn ok(server: &Server, args: &[&str]) -> String {
    let output = run(server, "editor-token", args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON a command printed with `--format json`.
fn json_of(server: &Server, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let text = ok(server, &args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// The one line a failing command wrote.
fn failure(server: &Server, token: &str, args: &[&str]) -> String {
    let output = run(server, token, args);
    assert!(!output.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn the_cli_drives_both_apis_and_says_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);

    // Compute images: a table for a person, JSON and YAML for scripts.
    let table = ok(
        &server,
        &["compute", "image", "list", "--folder-id", FOLDER],
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(IMAGE) && lines[1].contains("READY"),
        "{table}"
    );
    let image = json_of(&server, &["compute", "image", "get", IMAGE]);
    assert_eq!(image["folderId"], FOLDER);
    let yaml = ok(
        &server,
        &["compute", "image", "get", IMAGE, "--format", "yaml"],
    );
    assert!(yaml.contains(&format!("id: {IMAGE}\n")), "{yaml}");
    let copy = json_of(
        &server,
        &[
            "compute",
            "image",
            "create",
            "--folder-id",
            FOLDER,
            "--name",
            "copy",
            "--source-image-id",
            IMAGE,
            "--label",
            "team=cli",
        ],
    );
    assert_eq!(
        copy["status"], "READY",
        "create waits until the image is ready"
    );
    assert_eq!(copy["labels"]["team"], "cli");
    let updated = json_of(
        &server,
        &[
            "compute",
            "image",
            "update",
            IMAGE,
            "--description",
            "from the cli",
        ],
    );
    assert_eq!(updated["description"], "from the cli");
    let latest = json_of(
        &server,
        &[
            "compute",
            "image",
            "latest-by-family",
            "--folder-id",
            FOLDER,
            "--family",
            "base",
        ],
    );
    assert_eq!(latest["id"], IMAGE);
    let operations = json_of(&server, &["compute", "image", "operations", IMAGE]);
    let update = &operations[0];
    assert_eq!(update["description"], "Update image");
    assert_eq!(update["createdBy"], EDITOR);
    let id = update["id"].as_str().unwrap_or_default();
    assert_eq!(json_of(&server, &["operation", "get", id])["id"], id);
    assert_eq!(json_of(&server, &["operation", "wait", id])["done"], true);

    // Registry images.
    let listed = json_of(
        &server,
        &["registry", "image", "list", "--registry-id", REGISTRY],
    );
    let registry_image = listed[0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let table = ok(
        &server,
        &["registry", "image", "list", "--folder-id", FOLDER],
    );
    assert!(table.contains(&registry_image), "{table}");
    assert_eq!(
        json_of(&server, &["registry", "image", "get", &registry_image])["id"],
        registry_image
    );
    assert_eq!(
        json_of(&server, &["registry", "image", "delete", &registry_image])["done"],
        true
    );

    // Failures: one line with the code, and a non-zero exit.
    let copy_id = copy["id"].as_str().unwrap_or_default();
    let denied = failure(
        &server,
        "viewer-token",
        &["compute", "image", "delete", copy_id],
    );
    assert_eq!(denied, "yc-images: PERMISSION_DENIED: Permission denied");
    ok(&server, &["compute", "image", "delete", copy_id]);
    let gone = failure(
        &server,
        "editor-token",
        &["compute", "image", "get", copy_id],
    );
    assert_eq!(
        gone,
        format!("yc-images: NOT_FOUND: Image {copy_id} not found")
    );
    let unknown = failure(
        &server,
        "no-such-token",
        &["compute", "image", "list", "--folder-id", FOLDER],
    );
    assert!(
        unknown.starts_with("yc-images: UNAUTHENTICATED: "),
        "{unknown}"
    );
    let invalid = failure(
        &server,
        "editor-token",
        &["compute", "image", "get", &"x".repeat(51)],
    );
    assert!(
        invalid.starts_with("yc-images: INVALID_ARGUMENT: Request validation error: image_id"),
        "{invalid}"
    );
}

/// Registries from the command line: create (waiting until ACTIVE), list, get, update,
/// repositories, import into one (and into one that does not exist, which says so and creates nothing),
/// delete refused while it holds an image, then done once it holds none.
#[test]
fn the_cli_manages_registries_and_import_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);

    let made = json_of(
        &server,
        &[
            "registry",
            "create",
            "--folder-id",
            FOLDER,
            "--name",
            "from-cli",
            "--label",
            "team=cli",
        ],
    );
    assert_eq!(made["status"], "ACTIVE", "{made}");
    assert_eq!(made["labels"]["team"], "cli");
    let id = made["id"].as_str().unwrap_or_default().to_owned();
    let table = ok(&server, &["registry", "list", "--folder-id", FOLDER]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&id) && l.contains("from-cli") && l.contains("ACTIVE")),
        "{table}"
    );
    assert!(
        table.contains(REGISTRY),
        "the seeded registry is listed: {table}"
    );
    let filtered = json_of(
        &server,
        &[
            "registry",
            "list",
            "--folder-id",
            FOLDER,
            "--filter",
            "name = \"from-cli\"",
        ],
    );
    assert_eq!(filtered.as_array().map(Vec::len), Some(1), "{filtered}");
    assert_eq!(
        json_of(&server, &["registry", "get", &id])["name"],
        "from-cli"
    );
    let renamed = json_of(&server, &["registry", "update", &id, "--name", "renamed"]);
    assert_eq!(renamed["name"], "renamed");
    assert_eq!(
        renamed["labels"]["team"], "cli",
        "labels were not in the mask"
    );

    // Import creates nothing: into a registry that does not exist it says so.
    let layout = dir.path().join("layout");
    write_layout(&layout, "cli-app", "v1");
    let layout_arg = layout.display().to_string();
    let missing = failure(
        &server,
        "editor-token",
        &[
            "registry",
            "import",
            &layout_arg,
            "crpnosuchregistry000/app:v1",
        ],
    );
    assert!(
        missing.starts_with("yc-images: NOT_FOUND: registry crpnosuchregistry000 does not exist")
            && missing.contains("yc-images registry create"),
        "{missing}"
    );
    let unknown = failure(
        &server,
        "editor-token",
        &["registry", "get", "crpnosuchregistry000"],
    );
    assert_eq!(
        unknown,
        "yc-images: NOT_FOUND: Registry crpnosuchregistry000 not found"
    );
    let pushed = json_of(
        &server,
        &["registry", "import", &layout_arg, &format!("{id}/app:v1")],
    );
    let image = pushed["id"].as_str().unwrap_or_default().to_owned();
    let repositories = ok(
        &server,
        &["registry", "repository", "list", "--registry-id", &id],
    );
    assert!(
        repositories
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with(&format!("{id}/app"))),
        "{repositories}"
    );
    let repository = json_of(
        &server,
        &["registry", "repository", "get", &format!("{id}/app")],
    );
    let repository_id = repository["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        json_of(&server, &["registry", "repository", "get", &repository_id])["name"],
        format!("{id}/app")
    );

    // Delete: refused while the image is there, done once it is gone.
    let refused = failure(&server, "editor-token", &["registry", "delete", &id]);
    assert!(
        refused.starts_with("yc-images: FAILED_PRECONDITION: Registry ")
            && refused.contains("not empty"),
        "{refused}"
    );
    let denied = failure(
        &server,
        "viewer-token",
        &["registry", "create", "--folder-id", FOLDER],
    );
    assert_eq!(denied, "yc-images: PERMISSION_DENIED: Permission denied");
    ok(&server, &["registry", "image", "delete", &image]);
    assert_eq!(json_of(&server, &["registry", "delete", &id])["done"], true);
    let no_repository = failure(
        &server,
        "editor-token",
        &["registry", "repository", "get", &repository_id],
    );
    assert_eq!(
        no_repository,
        format!("yc-images: NOT_FOUND: Repository {repository_id} not found"),
        "a repository without images is gone"
    );
    let gone = failure(&server, "editor-token", &["registry", "get", &id]);
    assert_eq!(
        gone,
        format!("yc-images: NOT_FOUND: Registry {id} not found")
    );
}

/// Over TLS the command line trusts the CA it is given (`--ca`, here the one `serve --tls`
/// made); without it (the public roots), or over plaintext to a TLS server, it fails with one
/// line.
#[test]
fn the_cli_trusts_the_ca_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--tls"]);
    let https = format!("https://{}", server.address);
    let ca = dir.path().join("data/tls/ca.pem");
    let ca = ca.to_string_lossy();
    let list = ["compute", "image", "list", "--folder-id", FOLDER];
    let mut with_ca = list.to_vec();
    with_ca.extend(["--ca", &ca]);
    let output = run_at(&https, "editor-token", &with_ca);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(IMAGE), "{stdout}");

    // Without --ca the public roots are trusted (as for the real cloud), which this
    // server's own CA is not among: one line saying so.
    let without = run_at(&https, "editor-token", &list);
    assert!(!without.status.success());
    let said = String::from_utf8_lossy(&without.stderr);
    assert!(
        said.starts_with("yc-images: UNAVAILABLE: cannot reach https://"),
        "{said}"
    );
    assert!(said.contains("give --ca"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    let plaintext = run(&server, "editor-token", &list);
    assert!(!plaintext.status.success());
    let said = String::from_utf8_lossy(&plaintext.stderr);
    assert!(said.starts_with("yc-images: "), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
}

/// What a newcomer meets before any server: a Create without a source names every way to
/// give one, each group's help lists all its commands, and the shells get completions.
#[test]
fn the_cli_guides_a_newcomer() {
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_yc-images"))
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, _, said) = cli(&[
        "compute",
        "image",
        "create",
        "--folder-id",
        FOLDER,
        "--name",
        "x",
    ]);
    assert!(!ok);
    for flag in [
        "--source-image-id",
        "--source-image-name",
        "--source-family",
        "--source-disk-id",
        "--source-disk-name",
        "--source-snapshot-id",
        "--source-snapshot-name",
        "--source-uri",
    ] {
        assert!(said.contains(flag), "{flag}: {said}");
    }
    let (ok, _, said) = cli(&[
        "compute",
        "image",
        "create",
        "--folder-id",
        FOLDER,
        "--name",
        "x",
        "--source-image-id",
        "fd8a",
        "--source-uri",
        "http://h/i.qcow2",
    ]);
    assert!(!ok && said.contains("cannot be used with"), "{said}");

    let (ok, help, _) = cli(&["registry", "--help"]);
    assert!(ok);
    for command in [
        "create",
        "list",
        "get",
        "update",
        "delete",
        "gc",
        "repository",
        "image",
        "import",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "registry --help lacks {command}:\n{help}"
        );
    }
    for (group, commands) in [
        (&["compute"][..], &["image", "disk", "snapshot"][..]),
        (
            &["compute", "image"][..],
            &[
                "list",
                "get",
                "latest-by-family",
                "create",
                "update",
                "delete",
                "operations",
                "list-access-bindings",
                "set-access-bindings",
                "add-access-binding",
                "remove-access-binding",
            ][..],
        ),
        (&["compute", "disk"][..], &["list", "get"][..]),
    ] {
        let mut args = group.to_vec();
        args.push("--help");
        let (ok, help, _) = cli(&args);
        assert!(ok);
        for command in commands {
            assert!(
                help.contains(&format!("\n  {command} ")),
                "{group:?} --help lacks {command}:\n{help}"
            );
        }
    }
    let (ok, help, _) = cli(&["--help"]);
    assert!(ok && help.contains("import of an OCI layout"), "{help}");

    for shell in ["bash", "zsh", "fish"] {
        let (ok, script, said) = cli(&["completion", shell]);
        assert!(ok, "{shell}: {said}");
        assert!(
            script.contains("yc-images") && script.contains("registry"),
            "{shell}"
        );
    }
}

/// `compute image create` finds its source by family or by name, as `yc` does, and says so
/// when there is none.
#[test]
fn the_cli_finds_a_source_by_family_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let create = |name: &str, source: &[&str]| {
        let mut args = vec![
            "compute",
            "image",
            "create",
            "--folder-id",
            FOLDER,
            "--name",
            name,
            "--format",
            "json",
        ];
        args.extend_from_slice(source);
        run(&server, "editor-token", &args)
    };
    for (name, source, size) in [
        ("by-family", ["--source-family", "base"], "4194304"),
        ("by-name", ["--source-image-name", "base"], "4194304"),
        ("by-disk-id", ["--source-disk-id", DISK], "8589934592"),
        ("by-disk-name", ["--source-disk-name", "boot"], "8589934592"),
        (
            "by-snapshot-id",
            ["--source-snapshot-id", SNAPSHOT],
            "8589934592",
        ),
        (
            "by-snapshot-name",
            ["--source-snapshot-name", "nightly"],
            "8589934592",
        ),
    ] {
        let output = create(name, &source);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let made: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(made["name"], name);
        assert_eq!(made["status"], "READY");
        assert_eq!(made["minDiskSize"], size, "{made}");
    }
    for (flag, noun) in [
        ("--source-disk-name", "disk"),
        ("--source-snapshot-name", "snapshot"),
    ] {
        let output = create("nothing", &[flag, "no-such-source"]);
        assert!(!output.status.success());
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains("NOT_FOUND")
                && said.contains(&format!("no {noun} is named \"no-such-source\"")),
            "{said}"
        );
    }
    let output = create("nothing", &["--source-disk-id", "fhmnosuchdisk0000000"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("NOT_FOUND") && said.contains("Disk fhmnosuchdisk0000000 not found"),
        "{said}"
    );
    let output = create("nothing", &["--source-image-name", "no-such-image"]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("NOT_FOUND") && said.contains("no-such-image"),
        "{said}"
    );
    let output = create("nothing", &["--source-family", "no-such-family"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("NOT_FOUND"));
}

/// `compute disk|snapshot list|get`, and an image's access bindings from the command line:
/// add, list, remove, set; bad input is one line naming what is wrong.
#[test]
fn the_cli_reads_disks_and_snapshots_and_binds_roles_on_images() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let disks = json_of(&server, &["compute", "disk", "list", "--folder-id", FOLDER]);
    assert_eq!(disks.as_array().map(Vec::len), Some(1), "{disks}");
    assert_eq!(disks[0]["id"], DISK);
    let table = ok(&server, &["compute", "disk", "list", "--folder-id", FOLDER]);
    assert!(
        table.contains("boot") && table.contains("8.0 GiB"),
        "{table}"
    );
    let disk = json_of(&server, &["compute", "disk", "get", DISK]);
    assert_eq!(disk["typeId"], "network-ssd");
    assert_eq!(disk["size"], "8589934592", "JSON keeps bytes");
    // One resource as a table: sizes and times for a person too.
    let shown = ok(&server, &["compute", "disk", "get", DISK]);
    assert!(
        shown.contains("8.0 GiB") && shown.contains("2026-01-02T03:04:05Z"),
        "{shown}"
    );
    let snapshots = json_of(
        &server,
        &[
            "compute",
            "snapshot",
            "list",
            "--folder-id",
            FOLDER,
            "--filter",
            "name = \"nightly\"",
        ],
    );
    assert_eq!(snapshots[0]["id"], SNAPSHOT, "{snapshots}");
    let snapshot = json_of(&server, &["compute", "snapshot", "get", SNAPSHOT]);
    assert_eq!(snapshot["storageSize"], "1073741824");

    let bind = |verb: &str, role: &str, subject: &str| {
        json_of(
            &server,
            &[
                "compute",
                "image",
                verb,
                IMAGE,
                "--role",
                role,
                "--subject",
                subject,
            ],
        )
    };
    let added = bind(
        "add-access-binding",
        "compute.images.user",
        "userAccount:ajebob",
    );
    assert_eq!(added["effectiveDeltas"][0]["action"], "ADD", "{added}");
    bind(
        "add-access-binding",
        "viewer",
        "system:allAuthenticatedUsers",
    );
    let listed = json_of(
        &server,
        &["compute", "image", "list-access-bindings", IMAGE],
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let table = ok(
        &server,
        &["compute", "image", "list-access-bindings", IMAGE],
    );
    assert!(
        table.contains("compute.images.user") && table.contains("allAuthenticatedUsers"),
        "{table}"
    );
    let removed = bind(
        "remove-access-binding",
        "viewer",
        "system:allAuthenticatedUsers",
    );
    assert_eq!(
        removed["effectiveDeltas"][0]["action"], "REMOVE",
        "{removed}"
    );
    let set = json_of(
        &server,
        &[
            "compute",
            "image",
            "set-access-bindings",
            IMAGE,
            "--access-binding",
            "role=editor,subject=serviceAccount:ajeci",
        ],
    );
    assert_eq!(
        set["effectiveDeltas"].as_array().map(Vec::len),
        Some(2),
        "{set}"
    );
    let listed = json_of(
        &server,
        &["compute", "image", "list-access-bindings", IMAGE],
    );
    assert_eq!(listed[0]["roleId"], "editor", "{listed}");

    let said = failure(
        &server,
        "editor-token",
        &[
            "compute",
            "image",
            "add-access-binding",
            IMAGE,
            "--role",
            "owner",
            "--subject",
            "userAccount:a",
        ],
    );
    assert!(
        said.contains("INVALID_ARGUMENT")
            && said.contains("access_binding_deltas[0].access_binding.role_id"),
        "{said}"
    );
    let said = failure(
        &server,
        "viewer-token",
        &[
            "compute",
            "image",
            "add-access-binding",
            IMAGE,
            "--role",
            "viewer",
            "--subject",
            "userAccount:a",
        ],
    );
    assert!(said.contains("PERMISSION_DENIED"), "{said}");
    let output = run(
        &server,
        "editor-token",
        &[
            "compute",
            "image",
            "set-access-bindings",
            IMAGE,
            "--access-binding",
            "viewer",
        ],
    );
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("role=<role>,subject=<type>:<id>"), "{said}");
}
