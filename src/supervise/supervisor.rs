//! The event loop of `supervise`: start the services, restart them, stop them.
//!
//! State lives in one list of [`Instance`]s (a service has one, the worker
//! role `workers` of them). The loop waits for one of three things, never
//! polling: an [`Event`] from init (a signal, or children reaped), the
//! earliest timer (a restart whose backoff is over, a step of a stop
//! sequence, the shutdown deadline), or the verdict of the database gate
//! that Pulp roles wait at before they start again. After each it rewrites
//! the status file.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::libc::c_int;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::config::{Plan, Program, Restart, START_PHASE, ServiceSpec};
use super::database_gate::{DatabaseGate, Verdict};
use super::output::{Labels, Output, Stream};
use super::restart::{self, Decision};
use super::status::{self, Report, ServiceReport};
use crate::environment::Environment;
use crate::exit;
use crate::options::Options;
use crate::pid1::{self, ChildExit, Event, Init, Schedule, StopPolicy, StopStep};
use crate::role_policy;
use crate::roles::{CommandLine, Role};

/// How long, after the last service ended, what they left behind may take to die.
const LEFTOVER_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Running {
        pid: Pid,
        started: Instant,
    },
    /// Waiting to be started again.
    Backoff {
        until: Instant,
    },
    /// A Pulp role due to start, waiting for PostgreSQL to let us in.
    WaitingForDatabase,
    /// A Pulp role waiting for the start phase (run as a service) to end.
    WaitingForStartPhase,
    /// Ended, and its restart policy says it stays so.
    Exited,
    /// Ended too often in a row: given up.
    Failed,
    /// Ended during shutdown, or never started because of it.
    Stopped,
}

#[derive(Debug)]
struct Instance {
    /// `api`, `worker-2`.
    name: String,
    spec: ServiceSpec,
    state: State,
    /// When `state` began, for the status file.
    since: f64,
    restarts: u32,
    in_a_row: u32,
    last_exit: Option<ChildExit>,
    /// Its stop sequence, once it is being stopped.
    stopping: Option<Schedule>,
    /// Being removed (fewer workers after SIGHUP): never restarted.
    retiring: bool,
}

impl Instance {
    fn new(name: String, spec: ServiceSpec) -> Instance {
        Instance {
            name,
            spec,
            state: State::Stopped,
            since: status::unix_now(),
            restarts: 0,
            in_a_row: 0,
            last_exit: None,
            stopping: None,
            retiring: false,
        }
    }

    fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    fn set(&mut self, state: State) {
        self.state = state;
        self.since = status::unix_now();
    }

    fn report(&self) -> ServiceReport {
        let state = match self.state {
            State::Running { .. } if self.stopping.is_some() => "stopping",
            State::Running { .. } => "running",
            State::Backoff { .. } => "backoff",
            State::WaitingForDatabase => "waiting-for-db",
            State::WaitingForStartPhase => "waiting-for-start-phase",
            State::Exited => "exited",
            State::Failed => "failed",
            State::Stopped => "stopped",
        };
        ServiceReport {
            name: self.name.clone(),
            service: self.spec.name.clone(),
            pid: self.pid().map(Pid::as_raw),
            state: state.to_string(),
            restarts: self.restarts,
            since: self.since,
            last_exit: self.last_exit.map(|exit| exit.to_string()),
        }
    }
}

/// A shutdown in progress.
#[derive(Debug)]
struct Shutdown {
    /// Everything still alive then is killed; `None` once that was done.
    deadline: Option<Instant>,
    /// The exit code decided by an essential service, if one caused it.
    code: Option<i32>,
    /// The stop deadline as first set (or the second request): the
    /// services' output is not waited for past it.
    output_deadline: Instant,
}

pub struct Supervisor<'a> {
    init: &'a mut Init,
    options: &'a Options,
    env: &'a Environment,
    /// The command line of each Pulp role service, by service name.
    role_lines: BTreeMap<String, CommandLine>,
    plan: Plan,
    instances: Vec<Instance>,
    shutdown: Option<Shutdown>,
    status_path: PathBuf,
    status_failed: bool,
    /// The tasks copying service output, and where they send it.
    copying: Vec<JoinHandle<()>>,
    output: Output,
    /// Where Pulp roles wait for PostgreSQL before they start again.
    gate: Option<DatabaseGate>,
    /// The start phase's command when it runs as the [`START_PHASE`]
    /// service, after the services the Pulp roles depend on; the Pulp roles
    /// start once it ended with 0.
    start_phase: Option<CommandLine>,
}

impl<'a> Supervisor<'a> {
    pub fn new(
        init: &'a mut Init,
        plan: Plan,
        options: &'a Options,
        env: &'a Environment,
        role_lines: BTreeMap<String, CommandLine>,
        gate: Option<DatabaseGate>,
        start_phase: Option<CommandLine>,
    ) -> Supervisor<'a> {
        let mut instances = Vec::new();
        let mut start_phase_spec = start_phase.as_ref().map(|line| ServiceSpec {
            name: START_PHASE.to_string(),
            program: Program::Command(vec![line.program.to_string_lossy().into_owned()]),
            restart: Restart::Never,
            stop_signal: Signal::SIGTERM,
            stop_grace: None,
            depends_on: plan.start_phase_after(),
            essential: true,
        });
        for spec in &plan.services {
            // Before the first Pulp role, after what the roles depend on.
            if spec.role().is_some()
                && let Some(phase) = start_phase_spec.take()
            {
                instances.push(Instance::new(phase.name.clone(), phase));
            }
            for index in 1..=spec.instances(plan.workers) {
                instances.push(Instance::new(instance_name(spec, index), spec.clone()));
            }
        }
        Supervisor {
            init,
            options,
            env,
            role_lines,
            status_path: options.status_file.value.clone(),
            plan,
            instances,
            shutdown: None,
            status_failed: false,
            copying: Vec::new(),
            output: Output::new(),
            gate,
            start_phase,
        }
    }

    /// Run until every service has ended; returns the container's exit code.
    pub async fn run(mut self) -> i32 {
        info!(
            "supervising {} services ({} workers from {})",
            self.instances.len(),
            self.plan.workers,
            self.plan.workers_source
        );
        for index in 0..self.instances.len() {
            self.start(index);
        }
        loop {
            self.write_status(true);
            if self.shutdown.is_some() && !self.instances.iter().any(|i| i.pid().is_some()) {
                break;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                event = self.init.next_event() => match event {
                    Ok(event) => self.on_event(event),
                    Err(failure) => {
                        error!("cannot watch the services any more: {failure}; killing them");
                        self.kill_all();
                        self.write_status(false);
                        let copying = std::mem::take(&mut self.copying);
                        self.output.finish(copying, LEFTOVER_LIMIT, Instant::now()).await;
                        return exit::INTERNAL;
                    }
                },
                () = sleep_until(deadline) => self.on_timer(Instant::now()),
                verdict = gate_verdict(&mut self.gate) => self.on_verdict(verdict),
            }
        }
        if !self.init.reap_remaining(LEFTOVER_LIMIT).await {
            warn!("some processes the services started are still running");
        }
        // Every writer is gone now, so each copy ends at once with the last
        // lines; a stalled stdout is not waited for past the stop deadline.
        let until = self
            .shutdown
            .as_ref()
            .map_or_else(Instant::now, |s| s.output_deadline);
        let copying = std::mem::take(&mut self.copying);
        self.output.finish(copying, LEFTOVER_LIMIT, until).await;
        self.write_status(false);
        self.exit_code()
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Exited(dead) => {
                for (pid, exit) in dead {
                    match self.instances.iter().position(|i| i.pid() == Some(pid)) {
                        Some(index) => self.on_exit(index, pid, exit),
                        None => debug!("reaped orphan process {pid}: {exit}"),
                    }
                }
            }
            Event::Signal(signo) => {
                if let Some(signal) = pid1::termination_signal(signo) {
                    if self.shutdown.is_some() {
                        warn!(
                            "{}: second stop request, killing every service now",
                            signal.as_str()
                        );
                        self.kill_all();
                    } else {
                        info!("{}: stopping every service", signal.as_str());
                        self.begin_shutdown(None);
                    }
                } else if signo == Signal::SIGHUP as c_int {
                    self.reload();
                } else {
                    let target = self.init.signal_target();
                    for pid in self.instances.iter().filter_map(Instance::pid) {
                        pid1::send(pid, signo, target);
                    }
                }
            }
        }
    }

    fn on_exit(&mut self, index: usize, pid: Pid, exit: ChildExit) {
        // What the service left behind in its process group (a shell's
        // children, an arbiter's workers) must not outlive it: a restarted
        // service would find them holding its port or its task.
        pid1::send(pid, Signal::SIGKILL as c_int, self.init.signal_target());
        let now = Instant::now();
        let instance = &mut self.instances[index];
        let ran_for = match instance.state {
            State::Running { started, .. } => now.duration_since(started),
            _ => Duration::ZERO,
        };
        instance.last_exit = Some(exit);
        instance.stopping = None;
        if self.shutdown.is_some() {
            info!("{} {exit}", instance.name);
            instance.set(State::Stopped);
            self.stop_those_ready();
            return;
        }
        if instance.spec.name == START_PHASE && exit.exit_code() == 0 {
            info!(
                "start phase done in {}: starting the Pulp services",
                crate::duration::display(ran_for)
            );
            self.instances.remove(index);
            self.start_phase = None;
            let waiting: Vec<usize> = (0..self.instances.len())
                .filter(|&i| self.instances[i].state == State::WaitingForStartPhase)
                .collect();
            for index in waiting {
                self.start(index);
            }
            return;
        }
        if instance.retiring {
            info!("{} {exit}; removed", instance.name);
            self.instances.remove(index);
            return;
        }
        self.after_end(index, exit, ran_for);
    }

    /// Restart, leave ended, or give up on an instance that ended (or could
    /// not start) outside a shutdown.
    fn after_end(&mut self, index: usize, exit: ChildExit, ran_for: Duration) {
        let limits = self.plan.limits;
        let instance = &mut self.instances[index];
        let decision = restart::decide(
            instance.spec.restart,
            exit,
            ran_for,
            &mut instance.in_a_row,
            &limits,
        );
        let name = instance.name.clone();
        let essential = instance.spec.essential;
        match decision {
            Decision::Restart { after } => {
                warn!(
                    "{name} {exit} after {}; restarting in {}",
                    crate::duration::display(ran_for),
                    crate::duration::display(after)
                );
                instance.set(State::Backoff {
                    until: Instant::now() + after,
                });
                return;
            }
            Decision::Done => {
                info!("{name} {exit}; not restarted (restart policy)");
                instance.set(State::Exited);
            }
            Decision::GiveUp => {
                error!(
                    "{name} {exit}; it ended {} times in a row, giving up",
                    instance.in_a_row + 1
                );
                instance.set(State::Failed);
            }
        }
        if essential {
            let code = exit.exit_code();
            error!("{name} is essential: stopping every service, exit code {code}");
            self.begin_shutdown(Some(code));
        }
    }

    /// Start instance `index`, a Pulp role only once PostgreSQL lets us in.
    fn start_when_database_allows(&mut self, index: usize) {
        let instance = &mut self.instances[index];
        match self.gate.as_mut() {
            Some(gate) if instance.spec.role().is_some() => {
                instance.set(State::WaitingForDatabase);
                gate.check();
            }
            _ => self.start(index),
        }
    }

    /// The gate's check ended: start, or give up on, every service waiting there.
    fn on_verdict(&mut self, verdict: Verdict) {
        let waiting: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].state == State::WaitingForDatabase)
            .collect();
        let names = || {
            waiting
                .iter()
                .map(|&i| self.instances[i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match verdict {
            Verdict::Open => {}
            Verdict::Reopened { after } => {
                info!(
                    "PostgreSQL lets us in again after {}: starting {}",
                    crate::duration::display(after),
                    names()
                );
                for &index in &waiting {
                    self.instances[index].in_a_row = 0;
                }
            }
            Verdict::Closed(error) => {
                error!("{error}; giving up on {}", names());
                let mut essential = false;
                for &index in &waiting {
                    self.instances[index].set(State::Failed);
                    essential |= self.instances[index].spec.essential;
                }
                if essential {
                    self.begin_shutdown(Some(error.exit_code()));
                }
                return;
            }
        }
        for index in waiting {
            self.start(index);
        }
    }

    /// Start instance `index`; a failure to start counts as an exit.
    fn start(&mut self, index: usize) {
        if self.shutdown.is_some() {
            // An essential service ended while the others were being started.
            return;
        }
        if self.start_phase.is_some() && self.instances[index].spec.role().is_some() {
            self.instances[index].set(State::WaitingForStartPhase);
            return;
        }
        let command = self.command_for(&self.instances[index]);
        match self.spawn(index, command) {
            Ok(pid) => {
                let instance = &mut self.instances[index];
                debug!("started {} as pid {pid}", instance.name);
                instance.set(State::Running {
                    pid,
                    started: Instant::now(),
                });
            }
            Err(failure) => {
                error!("{}: {failure}", self.instances[index].name);
                let exit = ChildExit::Exited {
                    code: failure.exit_code(),
                };
                self.instances[index].last_exit = Some(exit);
                self.after_end(index, exit, Duration::ZERO);
            }
        }
    }

    fn spawn(&mut self, index: usize, mut command: Command) -> Result<Pid, pid1::Pid1Error> {
        command.stdin(Stdio::null());
        if self.plan.prefix {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = self.init.spawn(command)?;
        let pid = Pid::from_raw(child.id() as i32);
        let labels = Labels {
            width: self
                .instances
                .iter()
                .map(|i| i.name.len())
                .max()
                .unwrap_or(0),
            format: self.options.log_format.value,
        };
        let name = &self.instances[index].name;
        self.copying.retain(|task| !task.is_finished());
        if let Some(stdout) = child.stdout.take() {
            self.copying.extend(self.output.forward(
                name.clone(),
                Stream::Stdout,
                OwnedFd::from(stdout),
                labels,
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            self.copying.extend(self.output.forward(
                name.clone(),
                Stream::Stderr,
                OwnedFd::from(stderr),
                labels,
            ));
        }
        // Reaped through init's waitpid(-1), never through `child`.
        drop(child);
        Ok(pid)
    }

    fn command_for(&self, instance: &Instance) -> Command {
        if instance.spec.name == START_PHASE
            && let Some(line) = &self.start_phase
        {
            return line.to_command();
        }
        match &instance.spec.program {
            Program::Role { .. } => self.role_lines[&instance.spec.name].to_command(),
            Program::Command(words) => {
                let mut command = Command::new(&words[0]);
                command.args(&words[1..]);
                command
            }
        }
    }

    /// Stop every service: those nothing running depends on first, the rest
    /// as their dependents end; whatever is left at `stop_grace` is killed.
    fn begin_shutdown(&mut self, code: Option<i32>) {
        if self.shutdown.is_some() {
            return;
        }
        let deadline = Instant::now() + self.options.stop_grace.value;
        self.shutdown = Some(Shutdown {
            deadline: Some(deadline),
            code,
            output_deadline: deadline,
        });
        if let Some(gate) = self.gate.as_mut() {
            gate.abandon();
        }
        for instance in &mut self.instances {
            if matches!(
                instance.state,
                State::Backoff { .. } | State::WaitingForDatabase | State::WaitingForStartPhase
            ) {
                instance.set(State::Stopped);
            }
        }
        self.stop_those_ready();
    }

    /// Begin the stop sequence of each running instance no running service depends on.
    fn stop_those_ready(&mut self) {
        let ready: Vec<usize> = (0..self.instances.len())
            .filter(|&index| {
                let instance = &self.instances[index];
                instance.pid().is_some()
                    && instance.stopping.is_none()
                    && !self.instances.iter().any(|other| {
                        other.pid().is_some() && other.spec.depends_on.contains(&instance.spec.name)
                    })
            })
            .collect();
        for index in ready {
            self.begin_stop(index);
        }
    }

    /// Send the instance its stop signal and schedule the rest of its sequence.
    fn begin_stop(&mut self, index: usize) {
        let target = self.init.signal_target();
        let grace = self.instances[index]
            .spec
            .stop_grace
            .unwrap_or(self.options.stop_grace.value);
        let instance = &mut self.instances[index];
        let Some(pid) = instance.pid() else {
            return;
        };
        let policy = match instance.spec.role() {
            Some(role) => role_policy::stop_policy(role, self.options),
            None => StopPolicy::kill_after(grace),
        };
        let policy = StopPolicy {
            steps: policy
                .steps
                .into_iter()
                .map(|step| StopStep {
                    after: step.after.min(grace),
                    ..step
                })
                .collect(),
        };
        debug!(
            "stopping {} with {}",
            instance.name,
            instance.spec.stop_signal.as_str()
        );
        pid1::send(pid, instance.spec.stop_signal as c_int, target);
        instance.stopping = Some(Schedule::new(Instant::now(), &policy));
    }

    fn kill_all(&mut self) {
        for instance in &self.instances {
            if let Some(pid) = instance.pid() {
                pid1::send(pid, Signal::SIGKILL as c_int, self.init.signal_target());
            }
        }
        if let Some(shutdown) = self.shutdown.as_mut() {
            // At the deadline this changes nothing; on a second request it ends the wait.
            shutdown.output_deadline = shutdown.output_deadline.min(Instant::now());
            shutdown.deadline = None;
        } else {
            self.shutdown = Some(Shutdown {
                deadline: None,
                code: None,
                output_deadline: Instant::now(),
            });
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let shutting = self.shutdown.is_some();
        let restarts = self.instances.iter().filter_map(|i| match i.state {
            State::Backoff { until } if !shutting => Some(until),
            _ => None,
        });
        let stops = self
            .instances
            .iter()
            .filter_map(|i| i.stopping.as_ref().and_then(Schedule::next_deadline));
        let shutdown = self.shutdown.as_ref().and_then(|s| s.deadline);
        restarts.chain(stops).chain(shutdown).min()
    }

    fn on_timer(&mut self, now: Instant) {
        if let Some(shutdown) = &self.shutdown
            && shutdown.deadline.is_some_and(|deadline| deadline <= now)
        {
            warn!(
                "still running {} after the stop request: killing what is left",
                crate::duration::display(self.options.stop_grace.value)
            );
            self.kill_all();
        }
        let target = self.init.signal_target();
        for instance in &mut self.instances {
            if let (Some(pid), Some(schedule)) = (instance.pid(), instance.stopping.as_mut()) {
                for step in schedule.take_due(now) {
                    info!(
                        "{} still running {} into its stop: sending {}",
                        instance.name,
                        crate::duration::display(step.after),
                        step.signal.as_str()
                    );
                    pid1::send(pid, step.signal as c_int, target);
                }
            }
        }
        if self.shutdown.is_none() {
            let due: Vec<usize> = (0..self.instances.len())
                .filter(|&i| matches!(self.instances[i].state, State::Backoff { until } if until <= now))
                .collect();
            for index in due {
                self.instances[index].restarts += 1;
                info!("restarting {}", self.instances[index].name);
                self.start_when_database_allows(index);
            }
        }
    }

    /// SIGHUP: re-read the configuration and match the worker count.
    fn reload(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let plan = match Plan::load(&self.options.config_path, self.env) {
            Ok(plan) => plan,
            Err(failure) => {
                error!("SIGHUP: {failure}; keeping the running configuration");
                return;
            }
        };
        if plan.with_workers(self.plan.workers) != self.plan {
            warn!(
                "SIGHUP: only the worker count changes while running; other changes to {} take effect at the next start",
                self.options.config_path.display()
            );
        }
        if plan.workers == self.plan.workers {
            info!("SIGHUP: still {} workers", plan.workers);
            return;
        }
        info!(
            "SIGHUP: {} workers instead of {} (from {})",
            plan.workers, self.plan.workers, plan.workers_source
        );
        self.plan.workers = plan.workers;
        self.plan.workers_source = plan.workers_source;
        let workers: Vec<ServiceSpec> = self
            .plan
            .services
            .iter()
            .filter(|spec| spec.role() == Some(Role::Worker))
            .cloned()
            .collect();
        for spec in workers {
            self.scale(&spec, plan.workers as usize);
        }
    }

    /// Start or retire instances of `spec` until `count` are not retiring.
    fn scale(&mut self, spec: &ServiceSpec, count: usize) {
        let current: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].spec.name == spec.name && !self.instances[i].retiring)
            .collect();
        if current.len() > count {
            // The newest (last) ones go; ended ones are simply dropped.
            let mut doomed = current[count..].to_vec();
            doomed.sort_unstable_by(|a, b| b.cmp(a));
            for index in doomed {
                if self.instances[index].pid().is_some() {
                    info!("retiring {}", self.instances[index].name);
                    self.instances[index].retiring = true;
                    self.begin_stop(index);
                } else {
                    self.instances.remove(index);
                }
            }
        }
        for _ in current.len()..count {
            let taken: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
            let name = (1..)
                .map(|n| instance_name(spec, n))
                .find(|name| !taken.contains(&name.as_str()))
                .expect("some index is free");
            info!("adding {name}");
            self.instances.push(Instance::new(name, spec.clone()));
            self.start_when_database_allows(self.instances.len() - 1);
        }
    }

    /// The exit code: an essential service's, or after a stop request 0
    /// when every service ended cleanly (code 0, or the signal it was sent),
    /// else the first other ending.
    fn exit_code(&self) -> i32 {
        if let Some(code) = self.shutdown.as_ref().and_then(|s| s.code) {
            return code;
        }
        self.instances
            .iter()
            .filter_map(|i| i.last_exit.map(|exit| (exit, i.spec.stop_signal)))
            .find(|(exit, stop_signal)| match exit {
                ChildExit::Exited { code } => *code != 0,
                ChildExit::Killed { signal, .. } => *signal != *stop_signal as c_int,
            })
            .map_or(exit::SUCCESS, |(exit, _)| exit.exit_code())
    }

    fn write_status(&mut self, running: bool) {
        let report = Report {
            supervisor_pid: std::process::id() as i32,
            running,
            services: self.instances.iter().map(Instance::report).collect(),
        };
        match status::write(&self.status_path, &report) {
            Ok(()) => self.status_failed = false,
            Err(failure) if !self.status_failed => {
                // Said once: a read-only /tmp must not flood the log.
                warn!(
                    "cannot write the status file {}: {failure}; set status_file to a writable path",
                    self.status_path.display()
                );
                self.status_failed = true;
            }
            Err(_) => {}
        }
    }
}

/// `api`, or `worker-2` for a service with several instances.
fn instance_name(spec: &ServiceSpec, index: u32) -> String {
    match spec.role() {
        Some(Role::Worker) => format!("{}-{index}", spec.name),
        _ => spec.name.clone(),
    }
}

async fn gate_verdict(gate: &mut Option<DatabaseGate>) -> Verdict {
    match gate {
        Some(gate) => gate.verdict().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
