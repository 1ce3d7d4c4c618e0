//! An in-memory host, fake image gates and a daemon on a tempdir.

use super::*;

#[derive(Default)]
pub(super) struct FakeHost {
    pub(super) st: Mutex<FakeState>,
}

#[derive(Default)]
pub(super) struct FakeState {
    pub(super) next_pid: u32,
    /// id → (pid, exit, health).
    pub(super) running: HashMap<String, (u32, Option<String>, Arc<HealthCell>)>,
    pub(super) launched: Vec<String>,
    pub(super) destroyed: Vec<String>,
    pub(super) deleted: Vec<String>,
    pub(super) debug_ended: Vec<String>,
}

impl FakeHost {
    pub(super) fn with_running(ids: &[(&str, u32)]) -> FakeHost {
        let h = FakeHost::default();
        for (id, pid) in ids {
            h.st.lock().unwrap().running.insert(
                id.to_string(),
                (*pid, None, Arc::new(HealthCell::default())),
            );
        }
        h
    }

    pub(super) fn set_healthy(&self, id: &str) {
        let st = self.st.lock().unwrap();
        let h = &st.running[id].2;
        h.ok_streak.store(1, Ordering::Relaxed);
        h.ever_ok.store(true, Ordering::Relaxed);
    }
}

pub(super) struct NoDial;

impl Dial for NoDial {
    fn dial(&self) -> std::io::Result<std::net::TcpStream> {
        Err(std::io::Error::other("fake instance"))
    }
}

impl Host for FakeHost {
    fn list(&self) -> Vec<(String, u32)> {
        let st = self.st.lock().unwrap();
        st.running.iter().map(|(id, r)| (id.clone(), r.0)).collect()
    }

    fn alive(&self, pid: u32) -> bool {
        let st = self.st.lock().unwrap();
        st.running.values().any(|r| r.0 == pid && r.1.is_none())
    }

    fn exited(&self, _id: &str, pid: u32, _child: bool) -> Option<String> {
        let st = self.st.lock().unwrap();
        match st.running.values().find(|r| r.0 == pid) {
            Some(r) => r.1.clone(),
            None => Some("exited".into()),
        }
    }

    fn launch(
        &self,
        _service: &str,
        id: &str,
        _rel: &Release,
        _secrets: &[crate::secrets::HeldSecret],
    ) -> Result<Launched, HostError> {
        let mut st = self.st.lock().unwrap();
        st.next_pid += 1;
        let pid = 1000 + st.next_pid;
        st.running
            .insert(id.into(), (pid, None, Arc::new(HealthCell::default())));
        st.launched.push(id.into());
        Ok(Launched {
            pid,
            config_sha256: None,
            rootfs: None,
            drift: None,
        })
    }

    fn watch(&self, _service: &str, inst: &Instance, _spec: &ServiceSpec, _child: bool) -> Watch {
        let st = self.st.lock().unwrap();
        let mut w = Watch::idle();
        if let Some(r) = st.running.get(&inst.id) {
            w.health = r.2.clone();
        }
        w
    }

    fn dial(&self, _pid: u32, _port: u16, _watch: Option<&Watch>) -> Arc<dyn Dial> {
        Arc::new(NoDial)
    }

    fn kill(&self, id: &str) {
        if let Some(r) = self.st.lock().unwrap().running.get_mut(id) {
            r.1 = Some("was killed by SIGKILL".into());
        }
    }

    fn destroy(&self, id: &str, _pid: u32) {
        let mut st = self.st.lock().unwrap();
        st.running.remove(id);
        st.destroyed.push(id.into());
    }

    fn delete(&self, id: &str) {
        let mut st = self.st.lock().unwrap();
        st.running.remove(id);
        st.deleted.push(id.into());
    }

    fn prepare_debug(
        &self,
        id: &str,
        _rel: &Release,
        _tools: &Path,
        _terminal: bool,
    ) -> Result<Value, HostError> {
        Ok(json!({"id": id}))
    }

    fn end_debug(&self, id: &str) {
        self.st.lock().unwrap().debug_ended.push(id.into());
    }
}

/// A gate that passes every image, or refuses every one.
pub(super) struct Gate {
    pub(super) refuse: Option<String>,
}

impl ImageGate for Gate {
    fn check(&self, _image: &ImageRef, _policy: &Path) -> Result<String, GateError> {
        match &self.refuse {
            Some(why) => Err(GateError::Refused(why.clone())),
            None => Ok("ok".into()),
        }
    }
}

/// A gate that holds every check until released.
#[derive(Default)]
pub(super) struct BlockingGate {
    /// (checks entered, checks released).
    pub(super) state: Mutex<(u32, u32)>,
    pub(super) cv: Condvar,
}

impl BlockingGate {
    /// Wait until `n` checks are in progress or done.
    pub(super) fn wait_entered(&self, n: u32) {
        let mut g = self.state.lock().unwrap();
        while g.0 < n {
            g = self.cv.wait(g).unwrap();
        }
    }

    /// Let one more check finish.
    pub(super) fn release_one(&self) {
        self.state.lock().unwrap().1 += 1;
        self.cv.notify_all();
    }
}

impl ImageGate for BlockingGate {
    fn check(&self, _image: &ImageRef, _policy: &Path) -> Result<String, GateError> {
        let mut g = self.state.lock().unwrap();
        g.0 += 1;
        let me = g.0;
        self.cv.notify_all();
        while g.1 < me {
            g = self.cv.wait(g).unwrap();
        }
        Ok("ok".into())
    }
}

/// `status`, from another thread; `None` if it does not answer.
pub(super) fn status_from_elsewhere(sh: &Arc<Shared>) -> Option<Value> {
    let (tx, rx) = mpsc::channel();
    let sh = sh.clone();
    std::thread::spawn(move || {
        let _ = tx.send(sh.status());
    });
    rx.recv_timeout(Duration::from_secs(30)).ok()
}

pub(super) struct Rig {
    pub(super) dir: tempfile::TempDir,
    pub(super) clock: Arc<ManualClock>,
    pub(super) host: Arc<FakeHost>,
    pub(super) sh: Arc<Shared>,
}

impl Rig {
    /// A daemon on a tempdir state directory whose database holds `st`.
    pub(super) fn new(
        st: Option<FleetState>,
        host: FakeHost,
        gate: Arc<dyn ImageGate>,
        debug_tools: bool,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        if let Some(st) = st {
            std::fs::create_dir_all(dir.path().join("fleet")).unwrap();
            let db = Db::open(&dir.path().join("fleet/fleet.redb")).unwrap();
            db.save(&st).unwrap();
        }
        let clock = Arc::new(ManualClock::new(T0));
        let host = Arc::new(host);
        let h: Arc<dyn Host> = host.clone();
        let sh = Shared::open(
            Options {
                state_dir: dir.path().to_path_buf(),
                debug_tools: debug_tools.then(|| dir.path().to_path_buf()),
                metrics: None,
                metrics_token: None,
            },
            gate,
            clock.clone(),
            Timing::default(),
            move |_, _| h,
        )
        .unwrap();
        Rig {
            dir,
            clock,
            host,
            sh,
        }
    }

    pub(super) fn audit(&self) -> Vec<kiln_audit::Event> {
        let log = kiln_audit::AuditLog::open(self.dir.path()).unwrap();
        let mut out = Vec::new();
        log.events(0, |e| {
            out.push(e.event);
            true
        })
        .unwrap();
        out
    }

    pub(super) fn web(&self) -> ServiceState {
        lock(&self.sh.world).st.services["web"].clone()
    }
}

pub(super) fn desired(s: &ServiceSpec) -> Deployment {
    let mut d = Deployment::default();
    d.services.insert("web".into(), s.clone());
    d
}
