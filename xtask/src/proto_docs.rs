//! Generates the schema reference (docs/proto.md) from the comments in proto/, so the
//! reference and the schema cannot drift apart: the test suite compares them.

use std::{collections::HashMap, fmt::Write as _, path::Path};

use anyhow::Context as _;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, ServiceDescriptorProto,
    field_descriptor_proto::{Label, Type},
};

pub const DOC_PATH: &str = "docs/proto.md";

/// Files in reading order: the envelope first, then each topic.
const FILES: [&str; 8] = [
    "modelwatch/v1/envelope.proto",
    "modelwatch/v1/process.proto",
    "modelwatch/v1/artifact.proto",
    "modelwatch/v1/accelerator.proto",
    "modelwatch/v1/session.proto",
    "modelwatch/v1/health.proto",
    "modelwatch/v1/common.proto",
    "modelwatch/v1/service.proto",
];

pub fn render(root: &Path) -> anyhow::Result<String> {
    // A schema file missing from the reading order would silently go undocumented.
    let dir = root.join("proto/modelwatch/v1");
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "proto"))
        .map(|n| format!("modelwatch/v1/{n}"))
        .collect();
    present.sort();
    let mut listed: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    listed.sort();
    if present != listed {
        anyhow::bail!(
            "proto/modelwatch/v1 holds {present:?} but the reference lists {listed:?}: update FILES in xtask/src/proto_docs.rs"
        );
    }
    let mut compiler = protox::Compiler::new([root.join("proto")]).context("reading proto/")?;
    compiler.include_source_info(true);
    compiler.open_files(FILES).context("compiling proto/")?;
    let set = compiler.file_descriptor_set();
    let mut out = String::new();
    out.push_str("# modelwatch event schema reference (`modelwatch.v1`)\n\n");
    out.push_str("Generated from `proto/` by `cargo xtask proto-docs`; do not edit by hand.\n");
    out.push_str("Field numbers are never reused and changes are additive only (checked by `buf breaking`).\n");
    out.push_str("In JSON (proto3 mapping, proto field names), 64-bit integers are strings, enums are their names,\n");
    out.push_str("timestamps are RFC 3339, and fields with default values are omitted.\n");
    for name in FILES {
        let file = set
            .file
            .iter()
            .find(|f| f.name() == name)
            .with_context(|| format!("{name} did not compile into the set"))?;
        render_file(&mut out, file);
    }
    Ok(out)
}

struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn new(file: &FileDescriptorProto) -> Self {
        let mut map = HashMap::new();
        if let Some(info) = &file.source_code_info {
            for loc in &info.location {
                let text = loc.leading_comments().trim();
                if !text.is_empty() {
                    let joined: Vec<&str> = text.lines().map(str::trim).collect();
                    map.insert(loc.path.clone(), joined.join(" "));
                }
            }
        }
        Self(map)
    }

    fn get(&self, path: &[i32]) -> String {
        self.0.get(path).cloned().unwrap_or_default().replace('|', "\\|")
    }
}

fn render_file(out: &mut String, file: &FileDescriptorProto) {
    let comments = Comments::new(file);
    let _ = write!(out, "\n## {}\n", file.name());
    for (i, s) in file.service.iter().enumerate() {
        render_service(out, &comments, s, i as i32);
    }
    for (i, m) in file.message_type.iter().enumerate() {
        render_message(out, &comments, m, &[4, i as i32]);
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        render_enum(out, &comments, e, &[5, i as i32]);
    }
}

fn render_service(out: &mut String, c: &Comments, s: &ServiceDescriptorProto, i: i32) {
    let _ = write!(
        out,
        "\n### service {}\n\n{}\n\n| method | request | response | description |\n|---|---|---|---|\n",
        s.name(),
        c.get(&[6, i])
    );
    for (j, m) in s.method.iter().enumerate() {
        let stream = if m.server_streaming() { "stream " } else { "" };
        let _ = writeln!(
            out,
            "| `{}` | `{}` | `{stream}{}` | {} |",
            m.name(),
            short(m.input_type()),
            short(m.output_type()),
            c.get(&[6, i, 2, j as i32])
        );
    }
}

fn short(type_name: &str) -> &str {
    type_name.strip_prefix(".modelwatch.v1.").unwrap_or(type_name.trim_start_matches('.'))
}

fn field_type(f: &prost_types::FieldDescriptorProto, msg: &DescriptorProto) -> String {
    let base = match f.r#type() {
        Type::Message | Type::Enum => {
            // Map fields are repeated synthetic *Entry messages.
            if let Some(entry) = msg.nested_type.iter().find(|n| {
                n.options.as_ref().is_some_and(prost_types::MessageOptions::map_entry)
                    && f.type_name().ends_with(&format!(".{}", n.name()))
            }) {
                let k = entry.field.first().map(|k| field_type(k, entry)).unwrap_or_default();
                let v = entry.field.get(1).map(|v| field_type(v, entry)).unwrap_or_default();
                return format!("map<{k}, {v}>");
            }
            short(f.type_name()).to_owned()
        }
        t => format!("{t:?}").to_lowercase(),
    };
    if f.label() == Label::Repeated { format!("repeated {base}") } else { base }
}

fn render_message(out: &mut String, c: &Comments, m: &DescriptorProto, path: &[i32]) {
    let _ = write!(out, "\n### {}\n\n{}\n\n", m.name(), c.get(path));
    if m.field.is_empty() {
        out.push_str("(no fields)\n");
        return;
    }
    out.push_str("| # | field | type | description |\n|---|---|---|---|\n");
    for (j, f) in m.field.iter().enumerate() {
        let mut p = path.to_vec();
        p.extend([2, j as i32]);
        let oneof = f
            .oneof_index
            .and_then(|o| m.oneof_decl.get(o as usize))
            .map(|o| format!(" *(oneof `{}`)*", o.name()))
            .unwrap_or_default();
        let _ = writeln!(out, "| {} | `{}` | `{}` | {}{} |", f.number(), f.name(), field_type(f, m), c.get(&p), oneof);
    }
}

fn render_enum(out: &mut String, c: &Comments, e: &EnumDescriptorProto, path: &[i32]) {
    let _ =
        write!(out, "\n### enum {}\n\n{}\n\n| value | name | description |\n|---|---|---|\n", e.name(), c.get(path));
    for (j, v) in e.value.iter().enumerate() {
        let mut p = path.to_vec();
        p.extend([2, j as i32]);
        let _ = writeln!(out, "| {} | `{}` | {} |", v.number(), v.name(), c.get(&p));
    }
}
