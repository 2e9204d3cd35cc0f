//! CycloneDX 1.6 ML-BOMs (`--cyclonedx PATH` on `decant convert DIR` and
//! `decant attest DIR`): what a converted model or an attested bundle is
//! made of, for inventory and SBOM tooling that does not read in-toto.
//!
//! The BOM is a description, not evidence: it is not signed, and everything
//! in it is also in the signed receipt or manifest it references by
//! digest (an `attestation` external reference), which is what a gate
//! checks. Layout (docs/RECEIPTS.md, "CycloneDX ML-BOM"):
//!
//! - `metadata.component`: the model (`machine-learning-model`), with
//!   `modelCard.modelParameters` from its `config.json` when it names an
//!   architecture, the pickle sources as `pedigree.ancestors` (each source
//!   file a `file` component with its SHA-256, under the source model,
//!   with its Hugging Face purl when read from a cache), and the receipt
//!   or manifest as an `attestation` reference with its SHA-256.
//! - `components`: every file the receipt vouches for (convert) or the
//!   bundle holds (attest), as a `file` with its SHA-256 and a
//!   `decant:role` or `decant:class` property.
//! - `formulation`: the conversion (or audit) as one workflow: its inputs,
//!   outputs, times, the converter and sandbox policy digests.
//!
//! Only the subset of CycloneDX 1.6 decant writes is typed here; every
//! struct serialises to fields the 1.6 schema defines (it allows no
//! others), and CI validates fresh BOMs against the schema.

use crate::error::{Error, Result};
use crate::output::Pending;
use crate::trust::statement::{RevisionPurl, Sha256Hex};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

/// The CycloneDX version written; CI validates against its schema.
pub const SPEC_VERSION: &str = "1.6";
/// `bom-ref` of the model component.
const MODEL_REF: &str = "model";

/// A CycloneDX BOM (the fields decant writes).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    pub bom_format: &'static str,
    pub spec_version: &'static str,
    /// `urn:uuid:` and a random (v4) UUID: CycloneDX asks for a unique
    /// serial number for every BOM generated, even one whose content has
    /// not changed.
    pub serial_number: String,
    pub version: u32,
    pub metadata: Metadata,
    pub components: Vec<Component>,
    pub dependencies: Vec<Dependency>,
    pub formulation: Vec<Formula>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// RFC 3339.
    pub timestamp: String,
    pub lifecycles: Vec<Lifecycle>,
    pub tools: Tools,
    pub component: Component,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lifecycle {
    pub phase: Phase,
}

/// CycloneDX lifecycle phases decant's BOMs are made in.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// A conversion builds the model's safetensors form.
    Build,
    /// An attestation describes a bundle as it will be served.
    PostBuild,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentType {
    Application,
    MachineLearningModel,
    File,
}

/// A component.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    #[serde(rename = "type")]
    pub type_: ComponentType,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pedigree: Option<Pedigree>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_card: Option<ModelCard>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

impl Component {
    fn new(type_: ComponentType, name: impl Into<String>) -> Self {
        Component {
            type_,
            bom_ref: None,
            group: None,
            name: name.into(),
            version: None,
            hashes: Vec::new(),
            purl: None,
            pedigree: None,
            external_references: Vec::new(),
            components: Vec::new(),
            model_card: None,
            properties: Vec::new(),
        }
    }

    /// A file with its SHA-256, referenced as `ref_prefix` + its path.
    fn file(ref_prefix: &str, path: &str, sha256: &Sha256Hex) -> Self {
        Component {
            bom_ref: Some(format!("{ref_prefix}{path}")),
            hashes: vec![Hash::sha256(sha256)],
            ..Component::new(ComponentType::File, path)
        }
    }

    fn with_property(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push(Property {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// A hash; decant records SHA-256 only.
#[derive(Debug, Clone, Serialize)]
pub struct Hash {
    pub alg: HashAlg,
    /// Lower-case hex, no prefix.
    pub content: Sha256Hex,
}

impl Hash {
    pub fn sha256(digest: &Sha256Hex) -> Self {
        Hash {
            alg: HashAlg::Sha256,
            content: digest.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub enum HashAlg {
    /// CycloneDX spells it `SHA-256` (`sha256` is invalid).
    #[serde(rename = "SHA-256")]
    Sha256,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pedigree {
    pub ancestors: Vec<Component>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExternalReference {
    /// An IRI reference: a path relative to the model directory for files
    /// inside it, a `file:` URI otherwise.
    pub url: String,
    #[serde(rename = "type")]
    pub type_: ExternalReferenceType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExternalReferenceType {
    Attestation,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCard {
    pub model_parameters: ModelParameters,
}

/// What a transformers `config.json` says the model is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelParameters {
    /// `model_type` (`gpt2`, `llama`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture_family: Option<String>,
    /// `architectures[0]` (`GPT2LMHeadModel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_architecture: Option<String>,
}

/// A CycloneDX property: custom data (the schema allows no other fields).
#[derive(Debug, Clone, Serialize)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub ref_: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Formula {
    #[serde(rename = "bom-ref")]
    pub bom_ref: String,
    pub workflows: Vec<Workflow>,
}

/// A workflow: `bom-ref`, `uid` and `taskTypes` are required by the schema.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    #[serde(rename = "bom-ref")]
    pub bom_ref: String,
    pub uid: String,
    pub name: String,
    pub description: String,
    pub task_types: Vec<TaskType>,
    pub time_start: String,
    pub time_end: String,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    pub steps: Vec<Step>,
    pub properties: Vec<Property>,
}

/// CycloneDX task types decant's workflows are (there is no `convert`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskType {
    /// A conversion builds the safetensors form of the model.
    Build,
    /// `decant attest` scans every file of the bundle.
    Scan,
}

#[derive(Debug, Clone, Serialize)]
pub struct Input {
    pub resource: Resource,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    #[serde(rename = "type")]
    pub type_: OutputType,
    pub resource: Resource,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputType {
    Artifact,
    Attestation,
}

/// A workflow resource: a component of this BOM, or an external reference.
#[derive(Debug, Clone, Serialize)]
pub enum Resource {
    #[serde(rename = "ref")]
    Ref(String),
    #[serde(rename = "externalReference")]
    ExternalReference(ExternalReference),
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub description: String,
}

/// A random (v4) UUID, as RFC 9562 lays it out.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15] = b;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        u32::from_be_bytes([b0, b1, b2, b3]),
        u16::from_be_bytes([b4, b5]),
        (u16::from_be_bytes([b6, b7]) & 0x0fff) | 0x4000,
        (u16::from_be_bytes([b8, b9]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b10, b11, b12, b13, b14, b15]),
    )
}

fn decant_tool() -> Component {
    Component {
        bom_ref: Some("tool:decant".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        ..Component::new(ComponentType::Application, "decant")
    }
}

fn attestation(url: String, sha256: &Sha256Hex, comment: String) -> ExternalReference {
    ExternalReference {
        url,
        type_: ExternalReferenceType::Attestation,
        comment: Some(comment),
        hashes: vec![Hash::sha256(sha256)],
    }
}

/// The model component's name and group: a Hugging Face repository id
/// `ORG/NAME` is group and name.
fn named(component: Component, name: &str) -> Component {
    match name.split_once('/') {
        Some((group, name)) => Component {
            group: Some(group.into()),
            name: name.into(),
            ..component
        },
        None => Component {
            name: name.into(),
            ..component
        },
    }
}

fn bom(phase: Phase, model: Component, files: Vec<Component>, workflow: Workflow) -> Bom {
    let mut dependencies = vec![Dependency {
        ref_: MODEL_REF.into(),
        depends_on: files.iter().filter_map(|f| f.bom_ref.clone()).collect(),
    }];
    dependencies.extend(files.iter().filter_map(|f| {
        f.bom_ref.clone().map(|r| Dependency {
            ref_: r,
            depends_on: Vec::new(),
        })
    }));
    let formula_ref = format!("formula:{}", workflow.bom_ref);
    Bom {
        bom_format: "CycloneDX",
        spec_version: SPEC_VERSION,
        serial_number: format!("urn:uuid:{}", uuid_v4()),
        version: 1,
        metadata: Metadata {
            timestamp: crate::receipt::timestamp(SystemTime::now()),
            lifecycles: vec![Lifecycle { phase }],
            tools: Tools {
                components: vec![decant_tool()],
            },
            component: model,
        },
        components: files,
        dependencies,
        formulation: vec![Formula {
            bom_ref: formula_ref,
            workflows: vec![workflow],
        }],
    }
}

/// What a directory conversion's BOM records.
pub struct ConversionBom<'a> {
    /// The converted model's name (its repository id, or the output
    /// directory's name).
    pub model_name: String,
    /// The source model's name and, from a cache, its revision.
    pub source_name: String,
    pub origin: Option<&'a RevisionPurl>,
    /// Every file read as a source (checkpoints and their indexes), by
    /// path in the source directory.
    pub sources: Vec<(String, Sha256Hex)>,
    /// Every file the receipt vouches for, by path in the output
    /// directory, with its role: `converted`, `index` or `copied`.
    pub outputs: Vec<(String, Sha256Hex, &'static str)>,
    /// The receipt's path in the output directory and its SHA-256, if one
    /// was signed.
    pub receipt: Option<(String, Sha256Hex)>,
    pub model_parameters: Option<ModelParameters>,
    pub converter_sha256: Sha256Hex,
    pub policy_sha256: Sha256Hex,
    pub strict: bool,
    pub started: SystemTime,
    pub finished: SystemTime,
}

/// The BOM of a directory conversion.
pub fn conversion(c: &ConversionBom<'_>) -> Bom {
    let source_files: Vec<Component> = c
        .sources
        .iter()
        .map(|(path, sha)| {
            Component::file("source:", path, sha).with_property("decant:role", "source")
        })
        .collect();
    let ancestor = Component {
        purl: c.origin.map(|o| o.as_str().to_string()),
        components: source_files,
        ..named(
            Component::new(ComponentType::MachineLearningModel, ""),
            &c.source_name,
        )
    };
    let receipt_ref = c.receipt.as_ref().map(|(name, sha)| {
        attestation(
            crate::uri::relative_ref(name),
            sha,
            "decant conversion receipt: DSSE envelope, in-toto Statement v1, SLSA provenance v1 (path relative to the model directory)".into(),
        )
    });
    let model = Component {
        bom_ref: Some(MODEL_REF.into()),
        pedigree: Some(Pedigree {
            ancestors: vec![ancestor],
        }),
        external_references: receipt_ref.iter().cloned().collect(),
        model_card: c.model_parameters.clone().map(|p| ModelCard {
            model_parameters: p,
        }),
        ..named(
            Component::new(ComponentType::MachineLearningModel, ""),
            &c.model_name,
        )
    };
    let mut files: Vec<Component> = c
        .outputs
        .iter()
        .map(|(path, sha, role)| {
            Component::file("file:", path, sha).with_property("decant:role", *role)
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut outputs: Vec<Output> = files
        .iter()
        .filter_map(|f| f.bom_ref.clone())
        .map(|r| Output {
            type_: OutputType::Artifact,
            resource: Resource::Ref(r),
        })
        .collect();
    outputs.extend(receipt_ref.map(|r| Output {
        type_: OutputType::Attestation,
        resource: Resource::ExternalReference(r),
    }));
    let workflow = Workflow {
        bom_ref: "workflow:decant-convert".into(),
        uid: uuid_v4(),
        name: "decant convert".into(),
        description: "every pickle checkpoint converted to safetensors in decant's wasm sandbox (nothing in the checkpoint executed); other files copied unchanged".into(),
        task_types: vec![TaskType::Build],
        time_start: crate::receipt::timestamp(c.started),
        time_end: crate::receipt::timestamp(c.finished),
        inputs: c
            .sources
            .iter()
            .map(|(path, _)| Input {
                resource: Resource::Ref(format!("source:{path}")),
            })
            .collect(),
        outputs,
        steps: vec![Step {
            name: "convert".into(),
            description: "the converter guest (decant:converter-sha256) reads each checkpoint under the sandbox policy (decant:policy-sha256) and writes safetensors; the host validates every output before publishing".into(),
        }],
        properties: vec![
            Property {
                name: "decant:converter-sha256".into(),
                value: c.converter_sha256.to_string(),
            },
            Property {
                name: "decant:policy-sha256".into(),
                value: c.policy_sha256.to_string(),
            },
            Property {
                name: "decant:strict".into(),
                value: c.strict.to_string(),
            },
        ],
    };
    bom(Phase::Build, model, files, workflow)
}

/// What an attested bundle's BOM records.
pub struct AttestationBom<'a> {
    pub model_name: String,
    pub audit: &'a crate::bundle::audit::Audit,
    /// Where the manifest is (a URI reference: relative to the bundle when
    /// inside it, a `file:` URI otherwise) and its SHA-256.
    pub manifest: (String, Sha256Hex),
    pub model_parameters: Option<ModelParameters>,
    pub started: SystemTime,
    pub finished: SystemTime,
}

/// The BOM of an attested bundle: no conversion happened here, so the
/// pedigree is what the bundle's verified receipts say their files were
/// converted from.
pub fn attestation_bom(a: &AttestationBom<'_>) -> Bom {
    let audit = a.audit;
    let mut refs = vec![attestation(
        a.manifest.0.clone(),
        &a.manifest.1,
        "decant bundle manifest: DSSE envelope, in-toto Statement v1, predicate https://decant.dev/bundle/v1".into(),
    )];
    for r in &audit.receipts {
        refs.push(attestation(
            crate::uri::relative_ref(&r.name),
            &r.digest.sha256,
            format!(
                "decant conversion receipt in the bundle, verified with trusted key {}; covers {} files",
                r.signer,
                r.covers.len()
            ),
        ));
    }
    let ancestors: Vec<Component> = audit
        .receipt_sources
        .iter()
        .map(|s| Component {
            purl: s.origin.as_ref().map(|o| o.as_str().to_string()),
            components: s
                .files
                .iter()
                .map(|(path, sha)| {
                    Component::file(&format!("source:{}:", s.receipt), path, sha)
                        .with_property("decant:role", "source")
                })
                .collect(),
            properties: vec![Property {
                name: "decant:receipt".into(),
                value: s.receipt.clone(),
            }],
            ..named(
                Component::new(ComponentType::MachineLearningModel, ""),
                &s.source,
            )
        })
        .collect();
    let model = Component {
        bom_ref: Some(MODEL_REF.into()),
        pedigree: (!ancestors.is_empty()).then_some(Pedigree { ancestors }),
        external_references: refs.clone(),
        model_card: a.model_parameters.clone().map(|p| ModelCard {
            model_parameters: p,
        }),
        ..named(
            Component::new(ComponentType::MachineLearningModel, ""),
            &a.model_name,
        )
    };
    let files: Vec<Component> = audit
        .files
        .iter()
        .map(|f| {
            // The class as audit prints it (`pickle`, `safetensors`, ...).
            let class = serde_json::to_value(f.class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut c =
                Component::file("file:", &f.path, &f.sha256).with_property("decant:class", class);
            for finding in audit.findings.iter().filter(|x| x.file == f.path) {
                c = c.with_property(
                    "decant:finding",
                    format!(
                        "{} {}: {}",
                        finding.severity,
                        finding.kind.code(),
                        finding.message
                    ),
                );
            }
            c
        })
        .collect();
    let workflow = Workflow {
        bom_ref: "workflow:decant-attest".into(),
        uid: uuid_v4(),
        name: "decant attest".into(),
        description: "every file of the bundle classified and scanned in decant's wasm sandbox, then signed as a bundle manifest".into(),
        task_types: vec![TaskType::Scan],
        time_start: crate::receipt::timestamp(a.started),
        time_end: crate::receipt::timestamp(a.finished),
        inputs: files
            .iter()
            .filter_map(|f| f.bom_ref.clone())
            .map(|r| Input {
                resource: Resource::Ref(r),
            })
            .collect(),
        outputs: refs
            .into_iter()
            .take(1)
            .map(|r| Output {
                type_: OutputType::Attestation,
                resource: Resource::ExternalReference(r),
            })
            .collect(),
        steps: vec![Step {
            name: "audit".into(),
            description: "the guest scans each file's bytes; configs, templates and receipts are read by the host; findings are recorded per file (decant:finding)".into(),
        }],
        properties: vec![Property {
            name: "decant:converter-sha256".into(),
            value: crate::guest::sha256().to_string(),
        }],
    };
    bom(Phase::PostBuild, model, files, workflow)
}

/// `model_type` and `architectures[0]` of a transformers `config.json`,
/// when it has them as plain short strings; anything else is left out
/// (the BOM describes, it does not judge the config).
pub fn model_parameters(config_json: &[u8]) -> Option<ModelParameters> {
    #[derive(serde::Deserialize)]
    struct Config {
        model_type: Option<serde_json::Value>,
        architectures: Option<serde_json::Value>,
    }
    let plain = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .filter(|s| {
                !s.is_empty() && s.len() <= 128 && !s.chars().any(decant_abi::is_deceptive_char)
            })
            .map(str::to_string)
    };
    let config: Config = serde_json::from_slice(config_json).ok()?;
    let p = ModelParameters {
        architecture_family: plain(config.model_type.as_ref()),
        model_architecture: plain(
            config
                .architectures
                .as_ref()
                .and_then(serde_json::Value::as_array)
                .and_then(|a| a.first()),
        ),
    };
    (p != ModelParameters::default()).then_some(p)
}

/// Stages the BOM as a temp file beside `path`, to be published with the
/// files it describes (or dropped, which deletes it).
pub fn stage(bom: &Bom, path: &Path) -> Result<Pending> {
    let mut bytes = serde_json::to_vec_pretty(bom)
        .map_err(|e| Error::internal(format!("cannot serialise the BOM: {e}")))?;
    bytes.push(b'\n');
    let pending = Pending::new(path)?.with_exists_hint(crate::output::BOM_EXISTS_HINT);
    pending
        .file()?
        .write_all(&bytes)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), &e))?;
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serial number is `urn:uuid:` and a v4 UUID, fresh each time.
    #[test]
    fn serial_numbers_are_random_v4_uuids() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
        assert!(a
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    /// transformers' `model_type` and `architectures[0]` become the model
    /// card's parameters; odd values are left out.
    #[test]
    fn model_parameters_come_from_the_config() {
        let p = model_parameters(br#"{"model_type":"gpt2","architectures":["GPT2LMHeadModel"]}"#)
            .unwrap();
        assert_eq!(p.architecture_family.as_deref(), Some("gpt2"));
        assert_eq!(p.model_architecture.as_deref(), Some("GPT2LMHeadModel"));
        assert!(model_parameters(br#"{"model_type": 3, "architectures": "x"}"#).is_none());
        assert!(model_parameters(b"not json").is_none());
        assert!(model_parameters(br#"{"model_type":"a\u001b[2J"}"#).is_none());
    }

    /// Hash algorithms are spelt as CycloneDX spells them.
    #[test]
    fn sha256_is_spelt_sha_256() {
        let h = Hash::sha256(&Sha256Hex::of(b""));
        assert_eq!(
            serde_json::to_value(h).unwrap(),
            serde_json::json!({"alg": "SHA-256", "content": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
        );
    }
}
