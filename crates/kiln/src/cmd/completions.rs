//! `kiln completions bash|zsh|fish` (clap_complete) and `kiln man [--out DIR]`
//! (clap_mangen): generated from the same definition the parser uses, so they never
//! drift from the real flags. `scripts/quickstart.sh` installs both.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: CompletionShell,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write kiln.1 and one page per subcommand (kiln-build.1, ...) into DIR
    /// (created if missing); without it, print kiln.1 to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn completions(mut cmd: clap::Command, a: CompletionsArgs) -> Result<()> {
    let shell = match a.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "kiln", &mut out);
    out.flush()?;
    Ok(())
}

fn render(cmd: &clap::Command) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    Ok(buf)
}

pub fn man(cmd: clap::Command, a: ManArgs) -> Result<()> {
    let mut cmd = cmd;
    cmd.build();
    let Some(dir) = a.out else {
        std::io::stdout().lock().write_all(&render(&cmd)?)?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    let mut pages = vec![(String::from("kiln"), cmd.clone())];
    while let Some((name, c)) = pages.pop() {
        let page = c.clone().display_name(name.clone());
        kiln_oci::layout::write_atomic(&dir.join(format!("{name}.1")), &render(&page)?)?;
        written += 1;
        for sub in c.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            pages.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
    }
    println!("wrote {written} man pages to {}", dir.display());
    Ok(())
}
