//! Where a lake is: parsed once from its URL, shown as its URL.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use url::Url;

/// Where a lake is: a local directory, an S3 bucket and prefix, or memory (tests).
///
/// Parsed from `file:///abs/path`, a plain path (absolute or relative), `s3://bucket/prefix`
/// or `memory://`; shown as that URL again (a relative path as itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    /// A directory on this machine; relative to the working directory when not absolute.
    Local(PathBuf),
    /// A bucket and a key prefix without slashes at its ends (empty: the bucket's root).
    /// Credentials, region and endpoint come from the `AWS_*` environment.
    S3 { bucket: String, prefix: String },
    /// An in-process store, empty when opened and gone with the process.
    Memory,
}

/// Why a text is not a lake location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a lake location: {reason}")]
pub struct LocationError {
    text: String,
    reason: &'static str,
}

impl FromStr for LakeLocation {
    type Err = LocationError;

    fn from_str(text: &str) -> Result<Self, LocationError> {
        let bad = |reason| LocationError {
            text: text.to_owned(),
            reason,
        };
        if text.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("s3:// needs a bucket, as in s3://bucket/prefix"));
            }
            // The bucket is a host name: S3 and its look-alikes allow letters, digits, dots
            // and hyphens (a user, port or query here is a typo).
            if !bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(bad("an S3 bucket name has only letters, digits, dots and hyphens"));
            }
            if prefix.contains(['?', '#']) {
                return Err(bad("an S3 prefix takes no query or fragment"));
            }
            return Ok(LakeLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("memory://") {
            return match rest.trim_matches('/') {
                "" => Ok(LakeLocation::Memory),
                _ => Err(bad("memory:// takes no path")),
            };
        }
        if let Some(rest) = text.strip_prefix("file://") {
            // No percent-decoding: the path is taken as written, so that showing it gives the
            // same text back.
            return match rest {
                p if p.starts_with('/') => Ok(LakeLocation::Local(PathBuf::from(p))),
                _ => Err(bad(
                    "file:// is followed by an absolute path (file:///srv/lake); write a relative path without file://",
                )),
            };
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(LocationError {
                text: text.to_owned(),
                reason: if scheme.eq_ignore_ascii_case("s3") || scheme.eq_ignore_ascii_case("file") {
                    "the scheme is written in lower case (s3://, file://)"
                } else {
                    "the lake is file://, s3://, memory:// or a local path"
                },
            });
        }
        Ok(LakeLocation::Local(PathBuf::from(text)))
    }
}

impl fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LakeLocation::Local(dir) if dir.is_absolute() => write!(f, "file://{}", dir.display()),
            LakeLocation::Local(dir) => write!(f, "{}", dir.display()),
            LakeLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            LakeLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            LakeLocation::Memory => f.write_str("memory://"),
        }
    }
}

impl LakeLocation {
    /// A local location read beside `base` (a config file's folder) when it is relative;
    /// anything else unchanged.
    pub fn relative_to(self, base: &Path) -> LakeLocation {
        match self {
            LakeLocation::Local(dir) if dir.is_relative() => LakeLocation::Local(base.join(dir)),
            other => other,
        }
    }

    /// The URL under which DataFusion finds the lake's object store: `file:///`,
    /// `s3://bucket` or `memory://`.
    pub(crate) fn store_url(&self) -> Url {
        let text = match self {
            LakeLocation::Local(_) => "file:///".to_owned(),
            LakeLocation::S3 { bucket, .. } => format!("s3://{bucket}"),
            LakeLocation::Memory => "memory://".to_owned(),
        };
        Url::parse(&text).expect("the bucket was checked to be a host name when parsed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LakeLocation, String> {
        text.parse::<LakeLocation>().map_err(|e| e.to_string())
    }

    #[test]
    fn every_form_parses_and_shows_as_its_url() {
        let cases = [
            (
                "file:///srv/lake",
                LakeLocation::Local("/srv/lake".into()),
                "file:///srv/lake",
            ),
            ("/srv/lake", LakeLocation::Local("/srv/lake".into()), "file:///srv/lake"),
            ("lake", LakeLocation::Local("lake".into()), "lake"),
            ("../a b/lake", LakeLocation::Local("../a b/lake".into()), "../a b/lake"),
            (
                "s3://rade-lake/tpm/",
                LakeLocation::S3 {
                    bucket: "rade-lake".into(),
                    prefix: "tpm".into(),
                },
                "s3://rade-lake/tpm",
            ),
            (
                "s3://b",
                LakeLocation::S3 {
                    bucket: "b".into(),
                    prefix: String::new(),
                },
                "s3://b",
            ),
            ("memory://", LakeLocation::Memory, "memory://"),
        ];
        for (text, location, shown) in cases {
            assert_eq!(parse(text), Ok(location.clone()), "{text}");
            assert_eq!(location.to_string(), shown);
            assert_eq!(parse(shown), Ok(location), "{shown} parses back");
        }
    }

    #[test]
    fn errors_say_what_is_wrong_with_the_text() {
        for (text, says) in [
            ("", "empty"),
            ("s3://", "needs a bucket"),
            ("s3:///prefix", "needs a bucket"),
            ("s3://key@bucket/p", "bucket name"),
            ("s3://b/p?versionId=1", "no query"),
            ("S3://b/p", "lower case"),
            ("gs://b/p", "file://, s3://, memory:// or a local path"),
            ("file://lake", "absolute path"),
            ("memory://x", "no path"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(
                err.contains(says) && err.contains(&format!("`{text}`")),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn relative_paths_are_read_beside_a_base_and_stores_have_urls() {
        let base = Path::new("/etc/rade");
        assert_eq!(
            LakeLocation::Local("lake".into()).relative_to(base),
            LakeLocation::Local("/etc/rade/lake".into())
        );
        assert_eq!(
            LakeLocation::Local("/srv/lake".into()).relative_to(base),
            LakeLocation::Local("/srv/lake".into())
        );
        assert_eq!(LakeLocation::Memory.relative_to(base), LakeLocation::Memory);
        assert_eq!(parse("s3://b/p").expect("parses").store_url().as_str(), "s3://b");
        assert_eq!(LakeLocation::Memory.store_url().as_str(), "memory://");
        assert_eq!(parse("lake").expect("parses").store_url().as_str(), "file:///");
    }
}
