//! Issue 14 part 2: CycloneDX 1.6 ML-BOMs from `decant convert DIR
//! --cyclonedx PATH` and `decant attest DIR --cyclonedx PATH`, through the
//! binary. What the BOM says is checked against the files themselves and
//! the signed receipt or manifest; CI validates it against the schema.

use crate::common::{
    convert_keyed, copy_fixture_dir, decant, files_under, keygen, read_json, receipt_statement,
    sha256_file, verify_run,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// name -> SHA-256 of a list of components, every hash checked to be
/// spelt `SHA-256`.
fn hashes(components: &Value) -> BTreeMap<String, String> {
    components
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let h = &c["hashes"][0];
            assert_eq!(h["alg"], "SHA-256", "{c}");
            assert_eq!(c["hashes"].as_array().unwrap().len(), 1, "{c}");
            (
                c["name"].as_str().unwrap().to_string(),
                h["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn property<'a>(c: &'a Value, name: &str) -> Vec<&'a str> {
    c["properties"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["name"] == name)
                .map(|p| p["value"].as_str().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_envelope(bom: &Value) {
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["version"], 1);
    let serial = bom["serialNumber"].as_str().unwrap();
    let uuid = serial.strip_prefix("urn:uuid:").unwrap();
    assert_eq!(uuid.len(), 36, "{serial}");
    assert_eq!(&uuid[14..15], "4", "a v4 UUID: {serial}");
    let ts = bom["metadata"]["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && &ts[10..11] == "T",
        "{ts}"
    );
    assert_eq!(bom["metadata"]["tools"]["components"][0]["name"], "decant");
}

/// A converted model directory's BOM: the model is a
/// machine-learning-model with the config's architecture; every file the
/// receipt vouches for is a component whose SHA-256 is the file's real
/// one; the pickle is a pedigree ancestor with its real digest; the
/// conversion is a build workflow from the pickle to the outputs; and the
/// receipt is an attestation reference with the receipt file's digest.
#[test]
fn a_converted_directory_bom_lists_files_sources_workflow_and_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keygen(tmp.path());
    let src = tmp.path().join("src");
    copy_fixture_dir("dirs/single", &src, None);
    fs::write(
        src.join("config.json"),
        r#"{"model_type": "bert", "architectures": ["BertForMaskedLM"]}"#,
    )
    .unwrap();
    let out = tmp.path().join("tiny-bert");
    let bom_path = tmp.path().join("tiny-bert.cdx.json");
    let run = convert_keyed(
        &src,
        &out,
        &key,
        &["--cyclonedx", bom_path.to_str().unwrap(), "--json"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = run.json();
    assert_eq!(
        summary["directory"]["cyclonedx"],
        bom_path.to_str().unwrap()
    );
    let bom = read_json(&bom_path);
    assert_envelope(&bom);
    assert_eq!(bom["metadata"]["lifecycles"][0]["phase"], "build");

    let model = &bom["metadata"]["component"];
    assert_eq!(model["type"], "machine-learning-model");
    assert_eq!(model["name"], "tiny-bert");
    assert_eq!(
        model["modelCard"]["modelParameters"],
        serde_json::json!({"architectureFamily": "bert", "modelArchitecture": "BertForMaskedLM"})
    );

    // Every file the receipt vouches for, with its real digest.
    let receipt = out.join("decant.intoto.jsonl");
    let statement = receipt_statement(&receipt);
    let subjects: BTreeMap<String, String> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["digest"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let files = hashes(&bom["components"]);
    assert_eq!(files, subjects);
    let mut on_disk = files_under(&out);
    on_disk.retain(|f| f != "decant.intoto.jsonl");
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), on_disk);
    for (name, sha) in &files {
        assert_eq!(*sha, sha256_file(&out.join(name)), "{name}");
    }
    for c in bom["components"].as_array().unwrap() {
        assert_eq!(c["type"], "file");
        let role = property(c, "decant:role");
        let expected = if c["name"] == "model.safetensors" {
            "converted"
        } else {
            "copied"
        };
        assert_eq!(role, [expected], "{c}");
    }

    // The pickle source, as pedigree, with its real digest.
    let ancestors = model["pedigree"]["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 1);
    assert_eq!(ancestors[0]["type"], "machine-learning-model");
    assert_eq!(ancestors[0]["name"], "src");
    let sources = hashes(&ancestors[0]["components"]);
    assert_eq!(
        sources,
        BTreeMap::from([(
            "pytorch_model.bin".to_string(),
            sha256_file(&src.join("pytorch_model.bin"))
        )])
    );

    // The receipt, by the digest of the file.
    let refs = model["externalReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["type"], "attestation");
    assert_eq!(refs[0]["url"], "decant.intoto.jsonl");
    assert_eq!(refs[0]["hashes"][0]["alg"], "SHA-256");
    assert_eq!(refs[0]["hashes"][0]["content"], sha256_file(&receipt));

    // The conversion: a build workflow from the pickle to the outputs and
    // the receipt, naming the converter and policy the receipt names.
    let wf = &bom["formulation"][0]["workflows"][0];
    for field in ["bom-ref", "uid", "taskTypes"] {
        assert!(wf.get(field).is_some(), "workflow needs {field}: {wf}");
    }
    assert_eq!(wf["taskTypes"], serde_json::json!(["build"]));
    assert_eq!(
        wf["inputs"],
        serde_json::json!([{"resource": {"ref": "source:pytorch_model.bin"}}])
    );
    let outputs = wf["outputs"].as_array().unwrap();
    let artifacts: Vec<&str> = outputs
        .iter()
        .filter(|o| o["type"] == "artifact")
        .map(|o| o["resource"]["ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        artifacts,
        [
            "file:config.json",
            "file:model.safetensors",
            "file:tokenizer.json"
        ]
    );
    let attestation = outputs.iter().find(|o| o["type"] == "attestation").unwrap();
    assert_eq!(
        attestation["resource"]["externalReference"]["hashes"][0]["content"],
        refs[0]["hashes"][0]["content"]
    );
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let converter = deps
        .iter()
        .find(|d| d["annotations"]["role"] == "converter")
        .unwrap();
    assert_eq!(
        property(wf, "decant:converter-sha256"),
        [converter["digest"]["sha256"].as_str().unwrap()]
    );
    assert_eq!(
        property(wf, "decant:policy-sha256"),
        [
            statement["predicate"]["buildDefinition"]["internalParameters"]["sandbox"]
                ["policySha256"]
                .as_str()
                .unwrap()
        ]
    );
    // Every bom-ref a dependency or workflow names exists.
    let dependency_refs: Vec<&str> = bom["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ref"].as_str().unwrap())
        .collect();
    assert_eq!(dependency_refs[0], "model");
    assert_eq!(dependency_refs.len(), 1 + files.len());

    // Two BOMs of the same conversion have different serial numbers.
    let again = tmp.path().join("again.cdx.json");
    let out2 = tmp.path().join("out2");
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--cyclonedx",
        again.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bom2 = read_json(&again);
    assert_ne!(bom2["serialNumber"], bom["serialNumber"]);
    // Without a key there is no receipt to reference, and no claim of one.
    assert!(bom2["metadata"]["component"]
        .get("externalReferences")
        .is_none());
    assert!(!bom2["formulation"][0]["workflows"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["type"] == "attestation"));
    assert!(run.stdout.contains("CycloneDX ML-BOM: "), "{}", run.stdout);
}

/// A sharded checkpoint's BOM names each shard and the index as sources,
/// and the rewritten index as an `index` output.
#[test]
fn a_sharded_directory_bom_names_every_shard_and_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let src = crate::common::fixture("dirs/sharded");
    let out = tmp.path().join("out");
    let bom_path = tmp.path().join("bom.json");
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--cyclonedx",
        bom_path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bom = read_json(&bom_path);
    let sources = hashes(&bom["metadata"]["component"]["pedigree"]["ancestors"][0]["components"]);
    let expected: BTreeMap<String, String> = [
        "pytorch_model-00001-of-00003.bin",
        "pytorch_model-00002-of-00003.bin",
        "pytorch_model-00003-of-00003.bin",
        "pytorch_model.bin.index.json",
    ]
    .iter()
    .map(|n| (n.to_string(), sha256_file(&src.join(n))))
    .collect();
    assert_eq!(sources, expected);
    let index = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "model.safetensors.index.json")
        .unwrap();
    assert_eq!(property(index, "decant:role"), ["index"]);
    for (name, sha) in hashes(&bom["components"]) {
        assert_eq!(sha, sha256_file(&out.join(&name)), "{name}");
    }
}

/// A BOM written into the directory it describes would be a file no
/// receipt lists (and `decant verify DIR` would then refuse the model):
/// refused before anything is converted, for the output directory and for
/// an in-place conversion's source directory.
#[test]
fn a_bom_inside_the_model_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_fixture_dir("dirs/single", &src, None);
    let before = files_under(&src);
    let out = tmp.path().join("out");
    for (args, bom) in [
        (vec!["-o", out.to_str().unwrap()], out.join("bom.json")),
        (vec!["-o", out.to_str().unwrap()], out.join("sub/bom.json")),
        (vec![], src.join("bom.json")),
    ] {
        let mut all = vec!["convert", src.to_str().unwrap()];
        all.extend(args);
        all.extend(["--cyclonedx", bom.to_str().unwrap()]);
        let run = decant(&all);
        assert_eq!(run.code, 2, "{}", run.stderr);
        run.assert_error_shape();
        assert!(run.stderr.contains("is inside"), "{}", run.stderr);
        assert!(run.stderr.contains("--cyclonedx"), "{}", run.stderr);
        assert!(!out.exists(), "nothing may be written");
        assert_eq!(files_under(&src), before);
    }
}

/// An existing BOM is not replaced without --force (refused before the
/// conversion, naming --cyclonedx); with --force it is.
#[test]
fn an_existing_bom_is_replaced_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let src = crate::common::fixture("dirs/single");
    let out = tmp.path().join("out");
    let bom = tmp.path().join("bom.json");
    fs::write(&bom, "keep me").unwrap();
    let args = [
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--cyclonedx",
        bom.to_str().unwrap(),
    ];
    let run = decant(&args);
    assert_eq!(run.code, 2);
    run.assert_error_shape();
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert!(run.stderr.contains("--cyclonedx"), "{}", run.stderr);
    assert_eq!(fs::read_to_string(&bom).unwrap(), "keep me");
    assert!(!out.exists());
    let run = decant(&[&args[..], &["--force"]].concat());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(read_json(&bom)["specVersion"], "1.6");
}

/// A failed conversion writes no BOM (all or nothing).
#[test]
fn a_refused_conversion_writes_no_bom() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::copy(
        crate::common::fixture("refuse/unknown_global.pt"),
        src.join("evil.bin"),
    )
    .unwrap();
    let bom = tmp.path().join("bom.json");
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        tmp.path().join("out").to_str().unwrap(),
        "--cyclonedx",
        bom.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!bom.exists());
    assert!(crate::common::only_files(tmp.path()) == ["src"]);
}

/// An attested bundle's BOM: every file of the bundle with its real
/// digest and class, the findings per file, the signed manifest and the
/// verified conversion receipt as attestation references with their real
/// digests, and the pickle the receipt names as pedigree.
#[test]
fn an_attested_bundle_bom_lists_files_findings_manifest_and_receipts() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let bundle = tmp.path().join("bundle");
    let run =
        crate::common::convert_keyed(&crate::common::fixture("dirs/single"), &bundle, &key, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    fs::write(bundle.join("notes.xyz"), "unrecognised").unwrap();
    let bom_path = tmp.path().join("bundle.cdx.json");
    let run = decant(&[
        "attest",
        bundle.to_str().unwrap(),
        "--key",
        &key,
        "--trusted-key",
        &public,
        "--cyclonedx",
        bom_path.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let done = run.json();
    assert_eq!(done["cyclonedx"], bom_path.to_str().unwrap());
    let bom = read_json(&bom_path);
    assert_envelope(&bom);
    assert_eq!(bom["metadata"]["lifecycles"][0]["phase"], "post-build");
    let model = &bom["metadata"]["component"];
    assert_eq!(model["type"], "machine-learning-model");
    assert_eq!(model["name"], "bundle");
    assert_eq!(
        model["modelCard"]["modelParameters"]["architectureFamily"],
        "bert"
    );

    // Every file the bundle holds (the manifest inside it left out, as
    // verify leaves it out), with its real digest.
    let files = hashes(&bom["components"]);
    let mut on_disk = files_under(&bundle);
    on_disk.retain(|f| f != "decant.bundle.intoto.jsonl");
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), on_disk);
    for (name, sha) in &files {
        assert_eq!(*sha, sha256_file(&bundle.join(name)), "{name}");
    }
    let by_name = |n: &str| {
        bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        property(&by_name("model.safetensors"), "decant:class"),
        ["safetensors"]
    );
    assert_eq!(
        property(&by_name("decant.intoto.jsonl"), "decant:class"),
        ["receipt"]
    );
    let notes = by_name("notes.xyz");
    let findings = property(&notes, "decant:finding");
    assert_eq!(findings.len(), 1, "{notes}");
    assert!(findings[0].starts_with("low unrecognised"), "{findings:?}");

    // The manifest and the receipt, by their files' digests.
    let refs = model["externalReferences"].as_array().unwrap();
    let by_url: BTreeMap<&str, &str> = refs
        .iter()
        .map(|r| {
            assert_eq!(r["type"], "attestation");
            (
                r["url"].as_str().unwrap(),
                r["hashes"][0]["content"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_url,
        BTreeMap::from([
            (
                "decant.bundle.intoto.jsonl",
                sha256_file(&bundle.join("decant.bundle.intoto.jsonl")).as_str()
            ),
            (
                "decant.intoto.jsonl",
                sha256_file(&bundle.join("decant.intoto.jsonl")).as_str()
            ),
        ])
    );

    // The receipt's source as pedigree.
    let ancestors = model["pedigree"]["ancestors"].as_array().unwrap();
    assert_eq!(ancestors.len(), 1);
    assert_eq!(
        property(&ancestors[0], "decant:receipt"),
        ["decant.intoto.jsonl"]
    );
    assert_eq!(
        hashes(&ancestors[0]["components"]),
        BTreeMap::from([(
            "pytorch_model.bin".to_string(),
            sha256_file(&crate::common::fixture("dirs/single").join("pytorch_model.bin"))
        )])
    );
    let wf = &bom["formulation"][0]["workflows"][0];
    assert_eq!(wf["taskTypes"], serde_json::json!(["scan"]));
    assert_eq!(wf["inputs"].as_array().unwrap().len(), files.len());

    // The BOM is outside the bundle, so the bundle still verifies.
    let run = verify_run(
        &bundle,
        &bundle.join("decant.bundle.intoto.jsonl"),
        &public,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// attest refuses a BOM inside the bundle before writing anything, and an
/// existing BOM without --force.
#[test]
fn attest_refuses_a_bom_inside_the_bundle_or_over_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keygen(tmp.path());
    let bundle = tmp.path().join("bundle");
    fs::create_dir_all(&bundle).unwrap();
    fs::write(bundle.join("config.json"), "{}").unwrap();
    let inside = bundle.join("bom.json");
    let run = decant(&[
        "attest",
        bundle.to_str().unwrap(),
        "--key",
        &key,
        "--cyclonedx",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(
        run.stderr.contains("is inside the bundle"),
        "{}",
        run.stderr
    );
    assert_eq!(files_under(&bundle), ["config.json"]);
    let existing = tmp.path().join("bom.json");
    fs::write(&existing, "keep").unwrap();
    let run = decant(&[
        "attest",
        bundle.to_str().unwrap(),
        "--key",
        &key,
        "--cyclonedx",
        existing.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--cyclonedx"), "{}", run.stderr);
    assert_eq!(fs::read_to_string(&existing).unwrap(), "keep");
    assert_eq!(files_under(&bundle), ["config.json"]);
}

/// Converted from a Hugging Face cache, the model is named by its
/// repository (group and name), the source ancestor carries the purl with
/// the commit the receipt names, and a BOM path inside the cache is refused
/// (decant never writes into a cache).
#[test]
fn a_bom_from_the_hugging_face_cache_names_the_repository_and_commit() {
    use crate::common::{Blobs, HfCache, COMMIT};
    let tmp = tempfile::tempdir().unwrap();
    let (key, _) = keygen(tmp.path());
    let cache = HfCache::build(
        &tmp.path().join("hub"),
        "acme/tiny",
        &crate::common::fixture("dirs/single"),
        Blobs::InRepo,
    );
    let out = tmp.path().join("out");
    let inside = cache.root.join("bom.json");
    let before = cache.state();
    let run = decant(&[
        "convert",
        cache.repo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--cyclonedx",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.assert_error_shape();
    assert!(run.stderr.contains("Hugging Face cache"), "{}", run.stderr);
    assert_eq!(cache.state(), before);
    assert!(!out.exists());

    let bom_path = tmp.path().join("tiny.cdx.json");
    let run = convert_keyed(
        &cache.repo,
        &out,
        &key,
        &["--cyclonedx", bom_path.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bom = read_json(&bom_path);
    let model = &bom["metadata"]["component"];
    assert_eq!(
        (&model["group"], &model["name"]),
        (&"acme".into(), &"tiny".into())
    );
    let ancestor = &model["pedigree"]["ancestors"][0];
    let purl = format!("pkg:huggingface/acme/tiny@{COMMIT}");
    assert_eq!(ancestor["purl"], purl.as_str());
    let statement = receipt_statement(&out.join("decant.intoto.jsonl"));
    let sources: Vec<&Value> = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["role"] == "source")
        .collect();
    assert!(sources.iter().all(|d| d["uri"] == purl.as_str()));
    let from_receipt: BTreeMap<String, String> = sources
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["digest"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(hashes(&ancestor["components"]), from_receipt);
    assert_eq!(cache.state(), before, "nothing written into the cache");
}

/// A BOM is never written over a file the command reads (the key, the
/// policy, a trusted key), --force or not.
#[test]
fn a_bom_over_a_file_decant_reads_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path());
    let policy = tmp.path().join("policy.json");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox-policy/default.json"),
        &policy,
    )
    .unwrap();
    let kept = |p: &str| fs::read(p).unwrap();
    let (key_bytes, policy_bytes, public_bytes) =
        (kept(&key), kept(policy.to_str().unwrap()), kept(&public));
    let src = crate::common::fixture("dirs/single");
    let out = tmp.path().join("out");
    let convert = |bom: &str| {
        convert_keyed(
            &src,
            &out,
            &key,
            &[
                "--policy",
                policy.to_str().unwrap(),
                "--cyclonedx",
                bom,
                "--force",
            ],
        )
    };
    for bom in [key.as_str(), policy.to_str().unwrap()] {
        let run = convert(bom);
        assert_eq!(run.code, 2, "{bom}: {}", run.stderr);
        run.assert_error_shape();
        assert!(run.stderr.contains("the same file"), "{}", run.stderr);
    }
    let bundle = tmp.path().join("bundle");
    fs::create_dir_all(&bundle).unwrap();
    fs::write(bundle.join("config.json"), "{}").unwrap();
    let run = decant(&[
        "attest",
        bundle.to_str().unwrap(),
        "--key",
        &key,
        "--trusted-key",
        &public,
        "--cyclonedx",
        &public,
        "--force",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("the same file"), "{}", run.stderr);
    assert_eq!(kept(&key), key_bytes);
    assert_eq!(kept(policy.to_str().unwrap()), policy_bytes);
    assert_eq!(kept(&public), public_bytes);
    assert!(!out.exists());
}

/// Review of issue 14: a BOM path whose directory does not exist is
/// refused before any checkpoint is converted, not after.
#[test]
fn a_bom_path_in_a_missing_directory_is_refused_before_converting() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_fixture_dir("dirs/single", &src, None);
    let out = tmp.path().join("out");
    let bom = tmp.path().join("nodir").join("bom.json");
    let run = decant(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--cyclonedx",
        bom.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(
        !out.exists(),
        "the conversion ran before the BOM path was checked"
    );
}
