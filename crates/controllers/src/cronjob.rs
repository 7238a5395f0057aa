//! CronJob (batch/v1), as Kubernetes 1.33's cronjob controller (v2)
//! behaves: the schedule is parsed as robfig/cron's standard parser does
//! (5 fields, `@yearly`-style descriptors, `@every`, a `TZ=`/`CRON_TZ=`
//! prefix honoured with an UnsupportedSchedule warning, `spec.timeZone`);
//! at the most recent unmet schedule time a Job named
//! `{cronjob}-{minutes since the epoch}` is made from `jobTemplate`,
//! annotated `batch.kubernetes.io/cronjob-scheduled-timestamp` and owned
//! by the CronJob; concurrencyPolicy Allow/Forbid/Replace,
//! startingDeadlineSeconds (and the TooManyMissedTimes warning past 100
//! missed times), suspend, successful/failed history limits; status.active,
//! lastScheduleTime, lastSuccessfulTime; requeued at the next schedule time.
//!
//! Without `timeZone` (or a prefix) schedules are read in the controller's
//! local time zone, as kube-controller-manager does.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::ToSpan;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, WorkQueue};
use serde_json::json;

use crate::podutil;
use crate::Ctx;

pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const COMPONENT: &str = "cronjob-controller";
/// Kubernetes requeues this long after the next schedule time.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// Schedules (parsed by `api::cron`)

pub use api::cron::{load_location, parse, Schedule, ScheduleKind, STAR};

fn bit(set: u64, n: u32) -> bool {
    set & (1 << n) != 0
}

fn day_matches(dom: u64, dow: u64, d: Date) -> bool {
    let dom_match = bit(dom, d.day() as u32);
    let dow_match = bit(dow, d.weekday().to_sunday_zero_offset() as u32);
    if dom & STAR != 0 || dow & STAR != 0 {
        dom_match && dow_match
    } else {
        dom_match || dow_match
    }
}

/// Activation times of a parsed schedule (the parsing is `api::cron`'s).
pub trait NextTime {
    /// The first activation strictly after `t` (to the second), in the
    /// schedule's zone or else `default_tz`; None when there is none within
    /// five years (e.g. `0 0 30 2 *`). Local times skipped by a DST change
    /// do not fire; repeated ones fire twice (as robfig/cron).
    fn next(&self, t: Timestamp, default_tz: &TimeZone) -> Option<Timestamp>;
}

impl NextTime for Schedule {
    fn next(&self, t: Timestamp, default_tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow) = match self.kind {
            ScheduleKind::Every(secs) => {
                return Timestamp::from_second(t.as_second() + secs).ok();
            }
            ScheduleKind::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (minute, hour, dom, month, dow),
        };
        let tz = self.tz.as_ref().unwrap_or(default_tz);
        let after = t.as_second();
        let local = t.to_zoned(tz.clone()).datetime();
        let year_limit = local.year() as i32 + 5;
        let mut day = local.date().checked_sub(1.day()).ok()?;
        let mut best: Option<(Timestamp, DateTime)> = None;
        while (day.year() as i32) <= year_limit {
            if bit(month, day.month() as u32) && day_matches(dom, dow, day) {
                for h in 0..24u32 {
                    if !bit(hour, h) {
                        continue;
                    }
                    for m in 0..60u32 {
                        if !bit(minute, m) {
                            continue;
                        }
                        let dt = day.at(h as i8, m as i8, 0, 0);
                        if let Some((_, found_at)) = best {
                            // Offsets move by at most a few hours.
                            if dt > found_at.checked_add(4.hours()).ok()? {
                                return best.map(|b| b.0);
                            }
                        }
                        for ts in instants(tz, dt) {
                            if ts.as_second() > after && best.is_none_or(|(b, _)| ts < b) {
                                best = Some((ts, best.map_or(dt, |b| b.1)));
                            }
                        }
                    }
                }
            }
            day = day.checked_add(1.day()).ok()?;
        }
        best.map(|b| b.0)
    }
}

/// The instants a local time names in `tz`: none in a gap, two in a fold.
fn instants(tz: &TimeZone, dt: DateTime) -> Vec<Timestamp> {
    let amb = tz.to_ambiguous_timestamp(dt);
    match amb.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).into_iter().collect(),
        AmbiguousOffset::Gap { .. } => vec![],
        AmbiguousOffset::Fold { before, after } => before
            .to_timestamp(dt)
            .into_iter()
            .chain(after.to_timestamp(dt))
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// Schedule times (Kubernetes' cronjob utils)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// (earliest time considered, the most recent schedule time in
/// (earliest, now], how many were missed), or an error for schedules that
/// fire less than a second apart or never.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
    include_starting_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let spec = cj.spec.as_ref();
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if include_starting_deadline {
        if let Some(d) = spec.and_then(|s| s.starting_deadline_seconds) {
            let deadline = Timestamp::from_second(now.as_second() - d).unwrap_or(now);
            if deadline > earliest {
                earliest = deadline;
            }
        }
    }
    let never = || "time difference between two schedules is less than 1 second".to_string();
    let Some(t1) = sched.next(earliest, tz) else {
        return Err(never());
    };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = sched.next(t1, tz) else {
        return Err(never());
    };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.as_second() - t1.as_second();
    if between < 1 {
        return Err(never());
    }
    let elapsed = now.as_second() - t1.as_second();
    let missed = elapsed / between + 1;
    let potential = Timestamp::from_second(t1.as_second() + (missed - 2) * between)
        .map_err(|e| e.to_string())?;
    let mut most_recent = None;
    let mut t = sched.next(potential, tz);
    while let Some(x) = t {
        if x > now {
            break;
        }
        most_recent = Some(x);
        t = sched.next(x, tz);
    }
    let kind = if missed > 100 {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok((earliest, most_recent, kind))
}

/// How long until the schedule time after the most recent one (plus
/// Kubernetes' 100 ms).
pub fn next_schedule_delay(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    tz: &TimeZone,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, now, sched, tz, false) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = sched.next(from, tz)?;
    let ms = (next.as_millisecond() - now.as_millisecond()).max(0) as u64;
    Some(Duration::from_millis(ms) + NEXT_SCHEDULE_DELTA)
}

/// The Job's name for a schedule time.
pub fn job_name(cj_name: &str, scheduled: Timestamp) -> String {
    format!("{cj_name}-{}", scheduled.as_second().div_euclid(60))
}

/// The schedule string with the time zone as robfig/cron reads it, and
/// whether it carries a TZ of its own (UnsupportedSchedule).
fn format_schedule(spec: &k8s_openapi::api::batch::v1::CronJobSpec) -> (String, bool) {
    if spec.schedule.contains("TZ") {
        return (spec.schedule.clone(), true);
    }
    if let Some(tz) = &spec.time_zone {
        if load_location(tz).is_ok() {
            return (format!("TZ={tz} {}", spec.schedule), false);
        }
    }
    (spec.schedule.clone(), false)
}

// ---------------------------------------------------------------------------
// One sync, without I/O

/// What one sync decides.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// (type, reason, message)
    pub events: Vec<(&'static str, &'static str, String)>,
    /// Active jobs to delete (concurrencyPolicy Replace).
    pub replace: Vec<ObjectReference>,
    /// A Job to create for this schedule time.
    pub create: Option<Timestamp>,
    pub requeue: Option<Duration>,
    /// status.active after this sync (before the created job is added).
    pub active: Vec<ObjectReference>,
    pub last_successful_time: Option<Timestamp>,
}

pub fn job_is_finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            if c.type_ == "Complete" {
                "Complete"
            } else {
                "Failed"
            }
        })
}

/// Decides a sync of `cj` given its jobs (from the cache) and the uids of
/// active jobs confirmed gone. `default_tz` is the controller's zone.
pub fn plan(
    cj: &CronJob,
    jobs: &[Arc<Job>],
    gone: &HashSet<String>,
    now: Timestamp,
    default_tz: &TimeZone,
) -> Plan {
    let mut plan = Plan::default();
    let status = cj.status.clone().unwrap_or_default();
    let mut active = status.active.clone().unwrap_or_default();
    plan.last_successful_time = status.last_successful_time.as_ref().map(|t| t.0);
    let in_active = |active: &[ObjectReference], uid: &str| {
        active.iter().any(|r| r.uid.as_deref() == Some(uid))
    };
    let mut children = HashSet::new();
    for j in jobs {
        let uid = j.metadata.uid.clone().unwrap_or_default();
        let name = j.metadata.name.clone().unwrap_or_default();
        children.insert(uid.clone());
        let found = in_active(&active, &uid);
        let finished = job_is_finished(j);
        if !found && finished.is_none() {
            plan.events.push((
                "Warning",
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            ));
        } else if found && finished.is_some() {
            active.retain(|r| r.uid.as_deref() != Some(uid.as_str()));
            plan.events.push((
                "Normal",
                "SawCompletedJob",
                format!(
                    "Saw completed job: {name}, condition: {}",
                    finished.unwrap()
                ),
            ));
        }
        if finished == Some("Complete") {
            if let Some(ct) = j.status.as_ref().and_then(|s| s.completion_time.as_ref()) {
                if plan.last_successful_time.is_none_or(|l| ct.0 > l) {
                    plan.last_successful_time = Some(ct.0);
                }
            }
        }
    }
    active.retain(|r| {
        let uid = r.uid.clone().unwrap_or_default();
        if children.contains(&uid) || !gone.contains(&uid) {
            return true;
        }
        plan.events.push((
            "Normal",
            "MissingJob",
            format!(
                "Active job went missing: {}",
                r.name.as_deref().unwrap_or_default()
            ),
        ));
        false
    });
    plan.active = active;
    let Some(spec) = cj.spec.as_ref() else {
        return plan;
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    if let Some(tz) = &spec.time_zone {
        if let Err(e) = load_location(tz) {
            plan.events.push((
                "Warning",
                "UnknownTimeZone",
                format!("invalid timeZone: {tz:?}: {e}"),
            ));
            return plan;
        }
    }
    if spec.suspend == Some(true) {
        return plan;
    }
    let (schedule, has_tz) = format_schedule(spec);
    if has_tz {
        plan.events.push((
            "Warning",
            "UnsupportedSchedule",
            format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                spec.schedule
            ),
        ));
    }
    let sched = match parse(&schedule) {
        Ok(s) => s,
        Err(e) => {
            plan.events.push((
                "Warning",
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return plan;
        }
    };
    let tz = default_tz;
    let scheduled = match most_recent_schedule_time(cj, now, &sched, tz, true) {
        Err(e) => {
            plan.events.push((
                "Warning",
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return plan;
        }
        Ok((_, t, missed)) => {
            if let Some(t) = t.filter(|t| *t <= now) {
                if missed == Missed::Many {
                    plan.events.push((
                        "Warning",
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                    ));
                }
                Some(t)
            } else {
                None
            }
        }
    };
    // The next look: at the schedule time after the one handled now.
    let mut with_status = cj.clone();
    let Some(scheduled) = scheduled else {
        plan.requeue = next_schedule_delay(&with_status, now, &sched, tz);
        return plan;
    };
    let too_late = spec
        .starting_deadline_seconds
        .is_some_and(|d| scheduled.as_second() + d < now.as_second());
    if too_late {
        plan.events.push((
            "Warning",
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                rfc1123z(scheduled)
            ),
        ));
        plan.requeue = next_schedule_delay(&with_status, now, &sched, tz);
        return plan;
    }
    let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled);
    let last = status.last_schedule_time.as_ref().map(|t| t.0);
    if plan
        .active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || last == Some(scheduled)
    {
        plan.requeue = next_schedule_delay(&with_status, now, &sched, tz);
        return plan;
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !plan.active.is_empty() {
        plan.events.push((
            "Normal",
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        ));
        plan.requeue = next_schedule_delay(&with_status, now, &sched, tz);
        return plan;
    }
    if policy == "Replace" {
        plan.replace = std::mem::take(&mut plan.active);
    }
    plan.create = Some(scheduled);
    with_status
        .status
        .get_or_insert_with(Default::default)
        .last_schedule_time = Some(Time(scheduled));
    plan.requeue = next_schedule_delay(&with_status, now, &sched, tz);
    plan
}

fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

/// Finished jobs to delete beyond the history limits, oldest first.
pub fn history_to_delete(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<Arc<Job>> {
    let Some(spec) = cj.spec.as_ref() else {
        return vec![];
    };
    let (ok_limit, failed_limit) = (
        spec.successful_jobs_history_limit,
        spec.failed_jobs_history_limit,
    );
    let mut out = Vec::new();
    for (want, limit) in [("Complete", ok_limit), ("Failed", failed_limit)] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| job_is_finished(j) == Some(want))
            .collect();
        // By start time (none: last), then name.
        finished.sort_by(|a, b| {
            let st = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (st(a), st(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.metadata.name.cmp(&b.metadata.name),
            }
        });
        let n = finished.len().saturating_sub(limit.max(0) as usize);
        out.extend(finished.into_iter().take(n).cloned());
    }
    out
}

/// The Job for a schedule time, made from the template.
pub fn job_for(cj: &CronJob, scheduled: Timestamp) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let tm = spec.job_template.metadata.clone().unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let tz = spec
        .time_zone
        .as_deref()
        .and_then(|z| load_location(z).ok())
        .unwrap_or(TimeZone::UTC);
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        scheduled
            .to_zoned(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(
                cj.metadata.name.as_deref().unwrap_or_default(),
                scheduled,
            )),
            namespace: cj.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![podutil::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..Default::default()
        },
        spec: spec.job_template.spec.clone(),
        status: None,
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// The controller

struct Controller {
    client: kube::Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    recorder: runtime::Recorder,
    tz: TimeZone,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let cj_inf = ctx.informers.get::<CronJob>();
    let job_inf = ctx.informers.get::<Job>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        cronjobs: cj_inf.store(),
        jobs: job_inf.store(),
        recorder: ctx.recorder(COMPONENT),
        tz: TimeZone::system(),
    });
    {
        let q = queue.clone();
        cj_inf.on_change(move |ch: &Change<CronJob>| {
            q.add(key_of(ch.object().meta()));
        });
    }
    {
        let q = queue.clone();
        job_inf.on_change(move |ch: &Change<Job>| {
            let job = ch.object();
            let owners = [Some(job.as_ref()), ch.old().map(|o| o.as_ref())];
            let mut keys = BTreeMap::new();
            for j in owners.into_iter().flatten() {
                if let Some(r) = podutil::controller_of(&j.metadata).filter(|r| r.kind == "CronJob")
                {
                    keys.insert(
                        format!(
                            "{}/{}",
                            j.metadata.namespace.as_deref().unwrap_or_default(),
                            r.name
                        ),
                        (),
                    );
                }
            }
            for k in keys.into_keys() {
                q.add(k);
            }
        });
    }
    let (ci, ji) = (cj_inf.clone(), job_inf.clone());
    set.spawn(async move {
        ci.wait_synced().await;
        ji.wait_synced().await;
        run_workers(queue, 2, COMPONENT, move |key: String| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        })
        .await;
    });
}

impl Controller {
    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(cj) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Next::Done);
        };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.metadata.namespace.as_deref() == Some(ns))
            .filter(|j| podutil::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        // Active jobs missing from the cache: ask the API server.
        let mut gone = HashSet::new();
        for r in cj
            .status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .into_iter()
            .flatten()
        {
            let ruid = r.uid.clone().unwrap_or_default();
            if jobs
                .iter()
                .any(|j| j.metadata.uid.as_deref() == Some(ruid.as_str()))
            {
                continue;
            }
            match job_api
                .get_opt(r.name.as_deref().unwrap_or_default())
                .await?
            {
                Some(j) if j.metadata.uid.as_deref() == Some(ruid.as_str()) => {}
                _ => {
                    gone.insert(ruid);
                }
            }
        }
        let now = Timestamp::now();
        let plan = plan(&cj, &jobs, &gone, now, &self.tz);
        for (ty, reason, message) in &plan.events {
            if *ty == "Warning" {
                self.recorder.warning(cj.as_ref(), reason, message.clone());
            } else {
                self.recorder.normal(cj.as_ref(), reason, message.clone());
            }
        }
        let mut active = plan.active.clone();
        let mut last_schedule = cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.clone());
        for r in &plan.replace {
            let jname = r.name.clone().unwrap_or_default();
            match job_api.delete(&jname, &background(r.uid.clone())).await {
                Ok(_) => self.recorder.normal(
                    cj.as_ref(),
                    "SuccessfulDelete",
                    format!("Deleted job {jname}"),
                ),
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => {
                    self.recorder.warning(
                        cj.as_ref(),
                        "FailedDelete",
                        format!("Deleted job: {}", crate::replicaset::error_text(&e)),
                    );
                    return Err(e);
                }
            }
        }
        if let Some(scheduled) = plan.create {
            let want = job_for(&cj, scheduled);
            let created = match job_api.create(&PostParams::default(), &want).await {
                Ok(j) => {
                    self.recorder.normal(
                        cj.as_ref(),
                        "SuccessfulCreate",
                        format!(
                            "Created job {}",
                            j.metadata.name.as_deref().unwrap_or_default()
                        ),
                    );
                    Some(j)
                }
                Err(e) if runtime::is_conflict(&e) => {
                    let existing = job_api
                        .get(want.metadata.name.as_deref().unwrap_or_default())
                        .await?;
                    let ours =
                        podutil::controller_of(&existing.metadata).is_some_and(|r| r.uid == uid);
                    let listed = active.iter().any(|r| r.uid == existing.metadata.uid);
                    (ours && !listed).then_some(existing)
                }
                Err(e) => {
                    self.recorder.warning(
                        cj.as_ref(),
                        "FailedCreate",
                        format!("Error creating job: {}", crate::replicaset::error_text(&e)),
                    );
                    return Err(e);
                }
            };
            if let Some(j) = created {
                active.push(job_ref(&j));
                last_schedule = Some(Time(scheduled));
            }
        }
        // History limits.
        let doomed = history_to_delete(&cj, &jobs);
        for j in &doomed {
            let jname = j.metadata.name.clone().unwrap_or_default();
            match job_api
                .delete(&jname, &background(j.metadata.uid.clone()))
                .await
            {
                Ok(_) => self.recorder.normal(
                    cj.as_ref(),
                    "SuccessfulDelete",
                    format!("Deleted job {jname}"),
                ),
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => {
                    self.recorder.warning(
                        cj.as_ref(),
                        "FailedDelete",
                        format!("Deleted job: {}", crate::replicaset::error_text(&e)),
                    );
                }
            }
            active.retain(|r| r.uid != j.metadata.uid);
        }
        let old = cj.status.clone().unwrap_or_default();
        let new_active = (!active.is_empty()).then_some(active);
        let new_success = plan.last_successful_time.map(Time);
        if old.active != new_active
            || old.last_schedule_time != last_schedule
            || old.last_successful_time != new_success
        {
            let patch = json!({
                "metadata": {"resourceVersion": cj.metadata.resource_version},
                "status": {
                    "active": new_active,
                    "lastScheduleTime": last_schedule,
                    "lastSuccessfulTime": new_success,
                }
            });
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) => return Ok(Next::Done),
                Err(e) => return Err(e),
            }
        }
        Ok(match plan.requeue {
            Some(d) => Next::After(d),
            None => Next::Done,
        })
    }
}

fn background(uid: Option<String>) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus, JobCondition, JobStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_times() {
        let utc = TimeZone::UTC;
        let ny = TimeZone::get("America/New_York").unwrap();
        let cases: &[(&str, &TimeZone, &str, Option<&str>)] = &[
            (
                "*/1 * * * *",
                &utc,
                "2024-01-01T10:00:30Z",
                Some("2024-01-01T10:01:00Z"),
            ),
            (
                "*/1 * * * *",
                &utc,
                "2024-01-01T10:01:00Z",
                Some("2024-01-01T10:02:00Z"),
            ),
            (
                "*/15 * * * *",
                &utc,
                "2024-01-01T10:16:00Z",
                Some("2024-01-01T10:30:00Z"),
            ),
            (
                "@hourly",
                &utc,
                "2024-01-01T23:30:00Z",
                Some("2024-01-02T00:00:00Z"),
            ),
            (
                "@yearly",
                &utc,
                "2024-06-01T00:00:00Z",
                Some("2025-01-01T00:00:00Z"),
            ),
            (
                "@weekly",
                &utc,
                "2024-01-01T00:00:00Z",
                Some("2024-01-07T00:00:00Z"),
            ),
            (
                "0 0 29 2 *",
                &utc,
                "2024-03-01T00:00:00Z",
                Some("2028-02-29T00:00:00Z"),
            ),
            ("0 0 30 2 *", &utc, "2024-03-01T00:00:00Z", None),
            // Day of month OR day of week when both are restricted.
            (
                "0 0 13 * 5",
                &utc,
                "2024-09-01T00:00:00Z",
                Some("2024-09-06T00:00:00Z"),
            ),
            (
                "0 0 13 * *",
                &utc,
                "2024-09-01T00:00:00Z",
                Some("2024-09-13T00:00:00Z"),
            ),
            // Time zones: 9:00 in New York is 14:00 UTC in winter, 13:00 in summer.
            (
                "0 9 * * *",
                &ny,
                "2024-01-15T15:00:00Z",
                Some("2024-01-16T14:00:00Z"),
            ),
            (
                "0 9 * * *",
                &ny,
                "2024-07-15T15:00:00Z",
                Some("2024-07-16T13:00:00Z"),
            ),
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                &utc,
                "2024-01-15T00:30:00Z",
                Some("2024-01-16T00:00:00Z"),
            ),
            // Spring forward: 02:30 does not exist on 2024-03-10 in New York.
            (
                "30 2 * * *",
                &ny,
                "2024-03-09T08:00:00Z",
                Some("2024-03-11T06:30:00Z"),
            ),
            // Fall back: 01:30 happens twice on 2024-11-03.
            (
                "30 1 * * *",
                &ny,
                "2024-11-03T05:31:00Z",
                Some("2024-11-03T06:30:00Z"),
            ),
            (
                "30 1 * * *",
                &ny,
                "2024-11-03T04:00:00Z",
                Some("2024-11-03T05:30:00Z"),
            ),
            (
                "@every 90s",
                &utc,
                "2024-01-01T00:00:00Z",
                Some("2024-01-01T00:01:30Z"),
            ),
        ];
        for (spec, tz, after, want) in cases {
            let s = parse(spec).unwrap();
            assert_eq!(s.next(ts(after), tz), want.map(ts), "{spec} after {after}");
        }
    }

    fn cj(schedule: &str, created: &str, last: Option<&str>) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("cj".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                concurrency_policy: Some("Allow".into()),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(1),
                ..Default::default()
            }),
            status: Some(CronJobStatus {
                last_schedule_time: last.map(|l| Time(ts(l))),
                ..Default::default()
            }),
        }
    }

    fn job(name: &str, finished: Option<&str>, start: i64) -> Arc<Job> {
        Arc::new(Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                ..Default::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(Timestamp::from_second(start).unwrap())),
                completion_time: (finished == Some("Complete"))
                    .then(|| Time(Timestamp::from_second(start + 5).unwrap())),
                conditions: finished.map(|f| {
                    vec![JobCondition {
                        type_: f.into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn active_ref(name: &str) -> ObjectReference {
        ObjectReference {
            name: Some(name.into()),
            uid: Some(format!("{name}-uid")),
            ..Default::default()
        }
    }

    #[test]
    fn most_recent_and_missed() {
        let utc = TimeZone::UTC;
        let s = parse("*/1 * * * *").unwrap();
        // Not yet due.
        let c = cj("*/1 * * * *", "2024-01-01T10:00:10Z", None);
        let r = most_recent_schedule_time(&c, ts("2024-01-01T10:00:50Z"), &s, &utc, true).unwrap();
        assert_eq!(r.1, None);
        // One due.
        let r = most_recent_schedule_time(&c, ts("2024-01-01T10:01:05Z"), &s, &utc, true).unwrap();
        assert_eq!((r.1, r.2), (Some(ts("2024-01-01T10:01:00Z")), Missed::None));
        // Several missed: the most recent one.
        let r = most_recent_schedule_time(&c, ts("2024-01-01T10:30:05Z"), &s, &utc, true).unwrap();
        assert_eq!((r.1, r.2), (Some(ts("2024-01-01T10:30:00Z")), Missed::Few));
        // More than 100 missed.
        let r = most_recent_schedule_time(&c, ts("2024-01-02T10:30:05Z"), &s, &utc, true).unwrap();
        assert_eq!((r.1, r.2), (Some(ts("2024-01-02T10:30:00Z")), Missed::Many));
        // A starting deadline limits how far back we look.
        let mut d = c.clone();
        d.spec.as_mut().unwrap().starting_deadline_seconds = Some(200);
        let r = most_recent_schedule_time(&d, ts("2024-01-02T10:30:05Z"), &s, &utc, true).unwrap();
        assert_eq!((r.1, r.2), (Some(ts("2024-01-02T10:30:00Z")), Missed::Few));
        // Never-firing schedule.
        let never = parse("0 0 30 2 *").unwrap();
        assert!(
            most_recent_schedule_time(&c, ts("2024-01-02T10:30:05Z"), &never, &utc, true).is_err()
        );
    }

    #[test]
    fn plans() {
        let utc = TimeZone::UTC;
        let now = ts("2024-01-01T10:05:10Z");
        let none = HashSet::new();
        // Due: creates the job for 10:05 and requeues for 10:06 (+100ms).
        let c = cj(
            "*/1 * * * *",
            "2024-01-01T10:00:00Z",
            Some("2024-01-01T10:04:00Z"),
        );
        let p = plan(&c, &[], &none, now, &utc);
        assert_eq!(p.create, Some(ts("2024-01-01T10:05:00Z")));
        assert_eq!(p.requeue, Some(Duration::from_millis(50_100)));
        assert_eq!(job_name("cj", ts("2024-01-01T10:05:00Z")), "cj-28401725");
        // Already done for this time.
        let c2 = cj(
            "*/1 * * * *",
            "2024-01-01T10:00:00Z",
            Some("2024-01-01T10:05:00Z"),
        );
        let p = plan(&c2, &[], &none, now, &utc);
        assert_eq!(p.create, None);
        assert_eq!(p.requeue, Some(Duration::from_millis(50_100)));
        // Forbid with an active job: nothing, an event.
        let mut f = c.clone();
        f.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
        f.status.as_mut().unwrap().active = Some(vec![active_ref("cj-1")]);
        let p = plan(&f, &[job("cj-1", None, 1)], &none, now, &utc);
        assert_eq!(p.create, None);
        assert_eq!(p.events[0].1, "JobAlreadyActive");
        // Replace: the active job goes, a new one comes.
        let mut r = f.clone();
        r.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
        let p = plan(&r, &[job("cj-1", None, 1)], &none, now, &utc);
        assert_eq!(p.create, Some(ts("2024-01-01T10:05:00Z")));
        assert_eq!(p.replace.len(), 1);
        assert!(p.active.is_empty());
        // A finished active job leaves the list; a complete one sets lastSuccessfulTime.
        let p = plan(&f, &[job("cj-1", Some("Complete"), 100)], &none, now, &utc);
        assert!(p.active.is_empty());
        assert_eq!(p.events[0].1, "SawCompletedJob");
        assert_eq!(
            p.last_successful_time,
            Some(Timestamp::from_second(105).unwrap())
        );
        assert!(p.create.is_some());
        // A missing active job is dropped only when confirmed gone.
        let p = plan(&f, &[], &none, now, &utc);
        assert_eq!(p.active.len(), 1);
        let gone: HashSet<String> = ["cj-1-uid".to_string()].into();
        let p = plan(&f, &[], &gone, now, &utc);
        assert!(p.active.is_empty());
        assert_eq!(p.events[0].1, "MissingJob");
        // Suspended: nothing scheduled.
        let mut s = c.clone();
        s.spec.as_mut().unwrap().suspend = Some(true);
        assert_eq!(plan(&s, &[], &none, now, &utc), Plan::default());
        // A starting deadline: late times are skipped.
        let mut d = cj(
            "0 * * * *",
            "2024-01-01T08:00:00Z",
            Some("2024-01-01T09:00:00Z"),
        );
        d.spec.as_mut().unwrap().starting_deadline_seconds = Some(60);
        let p = plan(&d, &[], &none, ts("2024-01-01T10:05:00Z"), &utc);
        // (10:00 is outside the 60 s window: not even considered.)
        assert_eq!(p.create, None);
        assert!(p.events.is_empty());
        assert_eq!(
            rfc1123z(ts("2024-01-01T10:00:00Z")),
            "Mon, 01 Jan 2024 10:00:00 +0000"
        );
        // An old lastScheduleTime: catch up with the most recent time only, warning past 100.
        let old = cj(
            "*/1 * * * *",
            "2023-01-01T00:00:00Z",
            Some("2023-12-31T00:00:00Z"),
        );
        let p = plan(&old, &[], &none, now, &utc);
        assert_eq!(p.create, Some(ts("2024-01-01T10:05:00Z")));
        assert_eq!(p.events[0].1, "TooManyMissedTimes");
        // Bad schedules and zones.
        let p = plan(
            &cj("61 * * * *", "2024-01-01T00:00:00Z", None),
            &[],
            &none,
            now,
            &utc,
        );
        assert_eq!(p.events[0].1, "UnparseableSchedule");
        let mut z = c.clone();
        z.spec.as_mut().unwrap().time_zone = Some("Mars/Base".into());
        assert_eq!(
            plan(&z, &[], &none, now, &utc).events[0].1,
            "UnknownTimeZone"
        );
        let p = plan(
            &cj(
                "CRON_TZ=UTC */1 * * * *",
                "2024-01-01T10:00:00Z",
                Some("2024-01-01T10:04:00Z"),
            ),
            &[],
            &none,
            now,
            &utc,
        );
        assert_eq!(p.events[0].1, "UnsupportedSchedule");
        assert!(p.create.is_some());
        // timeZone: 9:00 Tokyo is 00:00 UTC.
        let mut tzc = cj("0 9 * * *", "2024-01-01T00:30:00Z", None);
        tzc.spec.as_mut().unwrap().time_zone = Some("Asia/Tokyo".into());
        let p = plan(&tzc, &[], &none, ts("2024-01-02T00:00:05Z"), &utc);
        assert_eq!(p.create, Some(ts("2024-01-02T00:00:00Z")));
        let j = job_for(&tzc, ts("2024-01-02T00:00:00Z"));
        assert_eq!(
            j.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2024-01-02T09:00:00+09:00"
        );
        let j = job_for(&c, ts("2024-01-01T10:05:00Z"));
        assert_eq!(
            j.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2024-01-01T10:05:00Z"
        );
        assert_eq!(j.metadata.owner_references.unwrap()[0].kind, "CronJob");
    }

    #[test]
    fn history_limits() {
        let c = cj("* * * * *", "2024-01-01T00:00:00Z", None);
        let jobs = vec![
            job("ok1", Some("Complete"), 1),
            job("ok2", Some("Complete"), 2),
            job("ok3", Some("Complete"), 3),
            job("ok4", Some("Complete"), 4),
            job("bad1", Some("Failed"), 1),
            job("bad2", Some("Failed"), 2),
            job("running", None, 5),
        ];
        let names: Vec<_> = history_to_delete(&c, &jobs)
            .iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["ok1", "bad1"]);
    }
}
