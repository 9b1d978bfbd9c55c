//! The files `iomodels load` writes (`--json`, `--hlog`): checked before anything connects,
//! written after the run, and never the reason a measurement is lost.
//!
//! The check proves each file's folder exists and takes a new file (it creates and removes a
//! hidden probe file there, the same kind the atomic write uses), so it leaves nothing behind
//! if the run then fails to connect: no empty `r.json` that a script could mistake for a
//! result. A write that still fails at the end (the folder vanished, the disk filled) saves a
//! copy in the temporary folder instead and says where. Deliberately not the writers
//! themselves: the documents are the record's and the report's own.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use iomodels::record::PointResult;

/// The output files asked for, each checked writable.
pub struct Outputs {
    json: Option<PathBuf>,
    hlog: Option<PathBuf>,
}

impl Outputs {
    /// Checks `--json` and `--hlog` before the run: one line naming the flag, the path and the
    /// fix if either cannot be created.
    pub fn check(json: Option<PathBuf>, hlog: Option<PathBuf>) -> anyhow::Result<Self> {
        if let (Some(j), Some(h)) = (&json, &hlog)
            && j == h
        {
            return Err(anyhow!(
                "--json and --hlog both name {}: give two files",
                j.display()
            ));
        }
        for (flag, path) in [("--json", &json), ("--hlog", &hlog)] {
            if let Some(p) = path {
                check(flag, p)?;
            }
        }
        Ok(Self { json, hlog })
    }

    /// Writes every file asked for; a file that cannot be written is saved in the temporary
    /// folder instead. `Err` is one line naming each failure and where its copy went.
    pub fn write(&self, result: &PointResult) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        if let Some(p) = &self.json {
            failed.extend(write_or_save("--json", p, |to| result.write_json(to)));
        }
        if let Some(p) = &self.hlog {
            failed.extend(write_or_save("--hlog", p, |to| {
                result.report.write_hlog(to)
            }));
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "{}; the summary above is complete: fix the folder (or free space) before the next run",
                failed.join("; ")
            ))
        }
    }
}

/// `None` when written at `path`; otherwise what went wrong and where the copy is.
fn write_or_save(
    flag: &str,
    path: &Path,
    write: impl Fn(&Path) -> io::Result<()>,
) -> Option<String> {
    let e = write(path).err()?;
    let name = path
        .file_name()
        .map_or("result".into(), |n| n.to_string_lossy());
    let copy = std::env::temp_dir().join(format!("iomodels-{}-{name}", std::process::id()));
    Some(match write(&copy) {
        Ok(()) => format!(
            "cannot write {flag} {} ({e}), saved to {} instead",
            path.display(),
            copy.display()
        ),
        Err(e2) => format!(
            "cannot write {flag} {} ({e}), nor a copy at {} ({e2})",
            path.display(),
            copy.display()
        ),
    })
}

/// One output path: a file name in an existing folder that takes new files.
pub fn check(flag: &str, p: &Path) -> anyhow::Result<()> {
    let shown = p.display();
    let example = match flag {
        "--hlog" => "r.hlog",
        "--html" => "report.html",
        _ => "r.json",
    };
    if p.is_dir() {
        return Err(anyhow!(
            "{flag} {shown} is a folder: give a file in it, e.g. {}",
            p.join(example).display()
        ));
    }
    let Some(name) = p.file_name() else {
        return Err(anyhow!("{flag} {shown}: give a file name, e.g. {example}"));
    };
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(anyhow!(
                "{flag} {shown}: {} is a file, not a folder: give a path in an existing folder",
                dir.display()
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "{flag} {shown}: folder {} does not exist: create it first or give another path",
                dir.display()
            ));
        }
        Err(e) => {
            return Err(anyhow!(
                "{flag} {shown}: cannot reach folder {} ({e}): give a path in a folder you can write",
                dir.display()
            ));
        }
    }
    let probe = dir.join(format!(
        ".{}.{}.check",
        name.to_string_lossy(),
        std::process::id()
    ));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(f) => {
            drop(f);
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(anyhow!(
            "{flag} {shown}: cannot create files in {} ({e}): give a path in a folder you can write",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("iomodels-outputs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_writable_path_passes_and_leaves_nothing_behind() {
        let d = scratch("ok");
        Outputs::check(Some(d.join("r.json")), Some(d.join("r.hlog"))).unwrap();
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            0,
            "no probe or empty file left"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn each_unwritable_path_is_one_line_naming_flag_path_and_fix() {
        let d = scratch("bad");
        let file = d.join("plain");
        fs::write(&file, b"x").unwrap();
        for (json, hlog, want) in [
            (Some(d.join("no/r.json")), None, "--json "),
            (None, Some(file.join("r.hlog")), "--hlog "),
            (Some(d.clone()), None, "--json "),
            (Some(d.join("r")), Some(d.join("r")), "--json and --hlog"),
        ] {
            let e = Outputs::check(json, hlog)
                .err()
                .expect("rejected")
                .to_string();
            assert!(e.starts_with(want) && !e.contains('\n'), "{e}");
            assert!(e.contains(&d.display().to_string()), "names the path: {e}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_saves_a_copy_and_says_where() {
        let d = scratch("gone");
        let p = d.join("vanished/r.json");
        let msg = write_or_save("--json", &p, |to| {
            if to == p {
                Err(io::Error::from(io::ErrorKind::NotFound))
            } else {
                fs::write(to, b"{}")
            }
        })
        .expect("failed");
        let copy = std::env::temp_dir().join(format!("iomodels-{}-r.json", std::process::id()));
        assert!(
            msg.contains(&format!("saved to {}", copy.display())),
            "{msg}"
        );
        assert_eq!(fs::read(&copy).unwrap(), b"{}");
        fs::remove_file(copy).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
