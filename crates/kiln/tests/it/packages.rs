//! Acceptance images built from the machine's Debian mirror by package name
//! (issue 13), each locked, built twice on two state directories (the same
//! digest), checked by dpkg and apt, and run under runc:
//! - a Flask app that answers HTTP,
//! - nginx (`nginx-light`) serving a static page as a non-root user with its
//!   temp paths on `/tmp`,
//! - curl opening a TLS connection to a local server whose certificate
//!   chains to a CA added with `[[ca_certificates]]`,
//! - `psql --version` from `postgresql-client`.
//!
//! The repositories are the machine's apt sources (`apt_sources`), never a
//! host name written here. Needs root, runc, openssl, nsenter and the mirror.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_oci::{Digest, Store};
use kiln_runtime::{Bundle, InstanceSpec, Runc, Runtime, http_get_in_netns, unpack};

use crate::support::{last_line, run};

/// The machine's deb822 apt sources file.
fn apt_sources() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .expect("/etc/apt/sources.list.d")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sources"))
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .expect("no /etc/apt/sources.list.d/*.sources: the mirror tests read the mirror from there")
}

struct Image {
    tmp: tempfile::TempDir,
}

impl Image {
    /// A spec directory with `spec` (its `@SOURCES@` replaced) and `files`.
    fn new(spec: &str, files: &[(&str, &[u8])]) -> Image {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spec");
        fs::create_dir_all(&dir).unwrap();
        let spec = spec.replace("@SOURCES@", &apt_sources().display().to_string());
        fs::write(dir.join("kiln.toml"), spec).unwrap();
        for (name, bytes) in files {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
        Image { tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("spec")
    }

    fn kiln(&self, state: &str, args: &[&str]) -> String {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.env("KILN_STATE_DIR", self.tmp.path().join(state))
            .env_remove("SOURCE_DATE_EPOCH")
            .args(args)
            .arg("-f")
            .arg(self.dir().join("kiln.toml"));
        let o = run(&mut c);
        assert!(
            o.status.success(),
            "kiln {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        last_line(&o)
    }

    /// Lock, build on two state dirs from that lock (same digest), check the
    /// rootfs with dpkg and apt; the unpacked rootfs and the digest.
    fn lock_build_check(&self) -> (kiln_runtime::Rootfs, String) {
        self.kiln("a", &["lock"]);
        let d1 = self.kiln("a", &["build", "--locked"]);
        let d2 = self.kiln("b", &["build", "--locked"]);
        assert_eq!(d1, d2, "two builds from one lock differ");
        // The second state dir has every .deb cached: offline works.
        let d3 = self.kiln("b", &["build", "--locked", "--offline"]);
        assert_eq!(d1, d3);
        let store = Store::open(self.tmp.path().join("a/store")).unwrap();
        let digest: Digest = d1.parse().unwrap();
        let rootfs = unpack(&store, &digest, &self.tmp.path().join("rootfs")).unwrap();
        check_dpkg(&rootfs.path);
        (rootfs, d1)
    }
}

/// The image's dpkg database is consistent (dpkg --audit) and every
/// dependency of every installed package is met (apt-get check, which
/// shares no code with kiln's solver).
fn check_dpkg(root: &Path) {
    let admin = root.join("var/lib/dpkg");
    let o = run(Command::new("dpkg")
        .arg(format!("--admindir={}", admin.display()))
        .arg("--audit"));
    assert!(
        o.status.success() && o.stdout.is_empty(),
        "dpkg --audit: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(Command::new("apt-get")
        .arg("-o")
        .arg(format!(
            "Dir::State::status={}",
            admin.join("status").display()
        ))
        .arg("-o")
        .arg("Debug::NoLocking=1")
        .arg("check"));
    assert!(
        o.status.success(),
        "apt-get check: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Running {
    runc: Runc,
    id: String,
    pid: u32,
    out: std::io::PipeReader,
    err: std::io::PipeReader,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.runc.delete(&self.id, true);
    }
}

impl Running {
    fn start(
        tmp: &Path,
        rootfs: &kiln_runtime::Rootfs,
        id: &str,
        args: Option<&[&str]>,
    ) -> Running {
        let mut spec = InstanceSpec::from_image(id, rootfs).unwrap();
        if let Some(a) = args {
            spec.args = a.iter().map(|s| s.to_string()).collect();
        }
        let dir = tmp.join("bundles").join(id);
        Bundle::write(&dir, &spec, &rootfs.path).unwrap();
        let runc = Runc::new(tmp.join("runc"));
        let (out, ow) = std::io::pipe().unwrap();
        let (err, ew) = std::io::pipe().unwrap();
        let pid = runc
            .start(id, &dir, OwnedFd::from(ow), OwnedFd::from(ew))
            .unwrap();
        Running {
            runc,
            id: id.into(),
            pid,
            out,
            err,
        }
    }

    /// Everything the process writes until it exits.
    fn output(mut self) -> (String, String) {
        let mut o = String::new();
        let mut e = String::new();
        self.out.read_to_string(&mut o).unwrap();
        self.err.read_to_string(&mut e).unwrap();
        (o, e)
    }

    fn wait_http(&self, port: u16, path: &str) {
        let t = Instant::now();
        loop {
            if let Ok(200) = http_get_in_netns(self.pid, port, path, Duration::from_millis(500)) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{}: no 200 on :{port}{path} after 30 s",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn prerequisites() {
    let mut missing = Vec::new();
    if !Runc::new("/nonexistent").available() {
        missing.push("runc");
    }
    for tool in ["openssl", "nsenter", "dpkg", "apt-get"] {
        if !run(Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}")))
        .status
        .success()
        {
            missing.push(tool);
        }
    }
    assert!(
        missing.is_empty(),
        "this test needs {} (scripts/install-deps.sh)",
        missing.join(", ")
    );
}

const FLASK_APP: &str = r#"
from flask import Flask
app = Flask(__name__)

@app.get("/")
def index():
    return "hello from flask\n"

app.run(host="0.0.0.0", port=8080)
"#;

#[test]
#[ignore = "needs root, runc and the Debian mirror"]
fn flask_app_answers_http() {
    prerequisites();
    let img = Image::new(
        r#"[image]
name = "flask"
tag = "1"
entrypoint = ["/usr/bin/python3", "/app/app.py"]
user = "app"
env = { PYTHONDONTWRITEBYTECODE = "1" }
base = "scratch"

[[repositories]]
apt_sources = "@SOURCES@"

[packages]
include = ["python3-flask"]

[[accounts]]
name = "app"
uid = 10001
gid = 10001

[[files]]
src = "app.py"
dst = "/app/app.py"
"#,
        &[("app.py", FLASK_APP.as_bytes())],
    );
    let (rootfs, _) = img.lock_build_check();
    let r = Running::start(img.tmp.path(), &rootfs, "kiln-flask", None);
    r.wait_http(8080, "/");
}

const NGINX_CONF: &str = "worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    include /etc/nginx/mime.types;
    server {
        listen 8080;
        root /srv/www;
    }
}
";

#[test]
#[ignore = "needs root, runc and the Debian mirror"]
fn nginx_serves_a_page_as_non_root() {
    prerequisites();
    let img = Image::new(
        r#"[image]
name = "nginx"
tag = "1"
entrypoint = ["/usr/sbin/nginx", "-c", "/etc/kiln/nginx.conf", "-g", "daemon off;"]
user = "web"
base = "scratch"

[[repositories]]
apt_sources = "@SOURCES@"

[packages]
include = ["nginx-light"]

[[accounts]]
name = "web"
uid = 10002
gid = 10002

[[files]]
src = "nginx.conf"
dst = "/etc/kiln/nginx.conf"

[[files]]
src = "www/"
dst = "/srv/www"
"#,
        &[
            ("nginx.conf", NGINX_CONF.as_bytes()),
            ("www/index.html", b"<h1>nginx from kiln</h1>\n"),
        ],
    );
    let (rootfs, _) = img.lock_build_check();
    let r = Running::start(img.tmp.path(), &rootfs, "kiln-nginx", None);
    r.wait_http(8080, "/index.html");
    // Not root: the master process runs as the spec's user.
    let status = fs::read_to_string(format!("/proc/{}/status", r.pid)).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(uid.contains("10002"), "{uid}");
}

/// A CA, and a server certificate for 127.0.0.1 signed by it.
fn test_pki(dir: &Path) {
    let sh = format!(
        "set -e; cd {d}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
  -days 2 -subj '/CN=kiln test internal CA' -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
  -subj '/CN=127.0.0.1' 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile ext -out server.crt 2>/dev/null",
        d = dir.display()
    );
    let o = run(Command::new("sh").arg("-c").arg(sh));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
#[ignore = "needs root, runc and the Debian mirror"]
fn tls_client_trusts_an_added_ca() {
    prerequisites();
    let pki = tempfile::tempdir().unwrap();
    test_pki(pki.path());
    let ca = fs::read(pki.path().join("ca.crt")).unwrap();
    let img = Image::new(
        r#"[image]
name = "tls-client"
tag = "1"
entrypoint = ["/usr/bin/curl", "-sS", "--retry", "40", "--retry-connrefused", "--retry-delay", "1", "https://127.0.0.1:8443/"]
user = "65532:65532"
base = "scratch"

[[repositories]]
apt_sources = "@SOURCES@"

[packages]
include = ["curl", "ca-certificates"]

[[ca_certificates]]
src = "certs/internal-ca.crt"
"#,
        &[("certs/internal-ca.crt", &ca)],
    );
    let (rootfs, _) = img.lock_build_check();
    let bundle = fs::read_to_string(rootfs.path.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.contains(String::from_utf8_lossy(&ca).trim()));
    let r = Running::start(img.tmp.path(), &rootfs, "kiln-tls", None);
    // The server listens inside the instance's network namespace.
    let mut server = Command::new("nsenter")
        .arg("-t")
        .arg(r.pid.to_string())
        .arg("-n")
        .args([
            "openssl", "s_server", "-quiet", "-naccept", "1", "-www", "-accept", "8443",
        ])
        .arg("-cert")
        .arg(pki.path().join("server.crt"))
        .arg("-key")
        .arg(pki.path().join("server.key"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (out, err) = r.output();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.contains("s_server"),
        "curl did not get the page over verified TLS: stdout {out:?} stderr {err:?}"
    );
}

#[test]
#[ignore = "needs root, runc and the Debian mirror"]
fn psql_reports_its_version() {
    prerequisites();
    let img = Image::new(
        r#"[image]
name = "psql"
tag = "1"
entrypoint = ["/usr/lib/postgresql/15/bin/psql", "--version"]
user = "65532:65532"
base = "scratch"

[[repositories]]
apt_sources = "@SOURCES@"

[packages]
include = ["postgresql-client"]
"#,
        &[],
    );
    let (rootfs, _) = img.lock_build_check();
    let (out, err) = Running::start(img.tmp.path(), &rootfs, "kiln-psql", None).output();
    assert!(
        out.starts_with("psql (PostgreSQL) 15."),
        "stdout {out:?} stderr {err:?}"
    );
}
