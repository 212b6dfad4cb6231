"""HorizontalPodAutoscaler controller (Kubernetes' pkg/controller/podautoscaler), resource metrics only.

Every --horizontal-pod-autoscaler-sync-period (15 s) per HPA: read the target's scale subresource (replicas and
the pods' label selector), the selected pods (informer) and their PodMetrics (metrics.k8s.io, served by the API
server from the kubelets), compute each metric's replica count (pklib/api/autoscaling.py: usage against
requests for Utilization, per pod for AverageValue, tolerance 0.1), take the largest, bound it by the
behavior's stabilization windows and rate policies (the spec's, else the defaults, scale-down window
--horizontal-pod-autoscaler-downscale-stabilization) and min/max, and write the scale. The status carries the
replicas, the current metrics and the conditions AbleToScale, ScalingActive and ScalingLimited; events
SuccessfulRescale, FailedGetScale, FailedGetResourceMetric, FailedComputeMetricsReplicas, FailedRescale, with
Kubernetes' reasons and messages. Recommendations and scale events are kept in memory (as Kubernetes does).
"""
from __future__ import annotations

import argparse
import copy
import time
from typing import Any

from pklib.api import autoscaling
from pklib.api.podresources import pod_amounts
from pklib.api.timefmt import format_time, now
from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError
from pklib.informer import Obj
from pklib.quantity import QuantityError, parse_quantity
from pklib.resources import HPAS, PODMETRICS, PODS, Resource, for_kind, lookup
from pklib.selectors import SelectorError, parse_label_selector

from .util import is_pod_ready, meta, write_status


class MetricsUnavailable(Exception):
    """A metric cannot be computed: the event/condition reason, the message, and the summary of all metrics'
    errors (the FailedComputeMetricsReplicas event)."""

    def __init__(self, reason: str, message: str, summary: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.summary = summary or f"invalid metrics (1 invalid out of 1), first error is: {message}"


def _milli(text: Any) -> int | None:
    try:
        return parse_quantity(text).milli_value()
    except QuantityError:
        return None


def _quantity(resource: str, milli: int) -> str:
    return f"{milli}m" if resource == "cpu" else str(milli // 1000)


class HorizontalPodAutoscalerController(Controller):
    name = "horizontalpodautoscaling"

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--horizontal-pod-autoscaler-sync-period", type=float, default=15.0,
                            help="seconds between two checks of an HPA's metrics")
        parser.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=int, default=300,
                            help="seconds of recommendations a scale-down looks back over (HPAs without behavior)")
        parser.add_argument("--horizontal-pod-autoscaler-tolerance", type=float, default=autoscaling.TOLERANCE,
                            help="the usage ratio's distance from 1.0 below which no scaling happens")

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.hpa_informer = self.watch(HPAS, self.enqueue, self._hpa_updated, self.enqueue)
        self.pod_informer = self.watch(PODS)
        self.period = float(self.option("horizontal_pod_autoscaler_sync_period", 15.0))
        self.down_window = int(self.option("horizontal_pod_autoscaler_downscale_stabilization", 300))
        self.tolerance = float(self.option("horizontal_pod_autoscaler_tolerance", autoscaling.TOLERANCE))
        self.history: dict[str, autoscaling.History] = {}

    def _hpa_updated(self, old: Obj, new: Obj) -> None:
        if old.get("spec") != new.get("spec"):
            self.enqueue(new)

    async def sync(self, key: str) -> None:
        hpa = self.hpa_informer.store.get(key)
        if hpa is None or meta(hpa).get("deletionTimestamp"):
            self.history.pop(key, None)
            return
        try:
            await self._reconcile(key, copy.deepcopy(hpa))
        finally:
            self.enqueue_after(key, self.period)

    async def _reconcile(self, key: str, hpa: Obj) -> None:
        spec, ns = hpa["spec"], meta(hpa)["namespace"]
        old_status = hpa.get("status") or {}
        status: dict[str, Any] = {"observedGeneration": meta(hpa).get("generation", 1),
                                  "currentReplicas": old_status.get("currentReplicas", 0),
                                  "desiredReplicas": old_status.get("desiredReplicas", 0),
                                  "conditions": copy.deepcopy(old_status.get("conditions") or [])}
        for kept in ("lastScaleTime", "currentMetrics"):
            if kept in old_status:
                status[kept] = old_status[kept]
        ref = spec["scaleTargetRef"]
        res = _target_resource(ref)
        try:
            if res is None:
                group = (ref.get("apiVersion") or "").rpartition("/")[0]
                raise ApiError({"code": 404, "reason": "NotFound",
                                "message": f'no matches for kind "{ref.get("kind")}" in group "{group}"'})
            scale = await self.client.get(res, ref["name"], ns, "scale")
        except ApiError as e:
            message = f"the HPA controller was unable to get the target's current scale: {e.message}"
            self.recorder.warning(hpa, "FailedGetScale", e.message)
            _condition(status, "AbleToScale", "False", "FailedGetScale", message)
            await self._write(hpa, status)
            return
        _condition(status, "AbleToScale", "True", "SucceededGetScale",
                   "the HPA controller was able to get the target's current scale")
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        status["currentReplicas"] = current
        low, high = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
        history = self.history.setdefault(key, autoscaling.History())
        at = time.monotonic()
        reason = ""
        if current == 0 and low != 0:
            desired = 0
            _condition(status, "ScalingActive", "False", "ScalingDisabled",
                       "scaling is disabled since the replica count of the target is zero")
        elif current > high:
            desired, reason = high, "Current number of replicas above Spec.MaxReplicas"
        elif current < low:
            desired, reason = low, "Current number of replicas below Spec.MinReplicas"
        else:
            try:
                proposed, metric_name, metrics = await self._from_metrics(hpa, scale, current)
            except MetricsUnavailable as e:
                self.recorder.warning(hpa, e.reason, str(e))
                self.recorder.warning(hpa, "FailedComputeMetricsReplicas", e.summary)
                _condition(status, "ScalingActive", "False", e.reason,
                           f"the HPA was unable to compute the replica count: {e}")
                status["desiredReplicas"] = current
                await self._write(hpa, status)
                return
            status["currentMetrics"] = metrics
            _condition(status, "ScalingActive", "True", "ValidMetricFound",
                       f"the HPA was able to successfully calculate a replica count from {metric_name}")
            behavior = autoscaling.effective_behavior(spec, self.down_window)
            stabilized, why, message = autoscaling.stabilize(history, at, current, proposed, behavior)
            _condition(status, "AbleToScale", "True", why, message)
            desired, why, message = autoscaling.rate_limit(history, at, current, stabilized, low, high, behavior)
            _condition(status, "ScalingLimited", "True" if desired != stabilized else "False", why, message)
            reason = f"{metric_name} above target" if desired > current else "All metrics below target"
        status["desiredReplicas"] = desired
        if desired != current:
            try:
                await self.client.update(res, {**scale, "spec": {"replicas": desired}}, "scale")
            except ApiError as e:
                self.recorder.warning(hpa, "FailedRescale", f"New size: {desired}; reason: {reason}; error: {e.message}")
                _condition(status, "AbleToScale", "False", "FailedUpdateScale",
                           f"the HPA controller was unable to update the target scale: {e.message}")
                await self._write(hpa, status)
                return
            self.recorder.normal(hpa, "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            _condition(status, "AbleToScale", "True", "SucceededRescale",
                       f"the HPA controller was able to update the target scale to {desired}")
            history.record_scale(at, current, desired)
            status["lastScaleTime"] = format_time(now())
        await self._write(hpa, status)

    async def _from_metrics(self, hpa: Obj, scale: Obj, current: int) -> tuple[int, str, list[Obj]]:
        """(the largest replica count the metrics ask for, the name of the metric that asked, currentMetrics)."""
        ns = meta(hpa)["namespace"]
        selector_text = (scale.get("status") or {}).get("selector") or ""
        try:
            selector = parse_label_selector(selector_text)
        except SelectorError as e:
            raise MetricsUnavailable("FailedGetResourceMetric", f"invalid selector {selector_text!r}: {e}") from None
        if not selector_text:
            raise MetricsUnavailable("InvalidSelector", "selector is required")
        pods = [p for p in self.pod_informer.store.by_index("namespace", ns)
                if selector.matches(meta(p).get("labels") or {})]
        try:
            listed = await self.client.list(PODMETRICS, ns, label_selector=selector_text)
        except ApiError as e:
            listed = {"items": []}
            metrics_error: str | None = e.message
        else:
            metrics_error = None
        usage = {m["metadata"]["name"]: m for m in listed.get("items") or []}
        best: tuple[int, str] | None = None
        currents: list[Obj] = []
        errors: list[MetricsUnavailable] = []
        specs = hpa["spec"].get("metrics") or []
        for metric in specs:
            try:
                replicas, name, entry = self._one_metric(metric, pods, usage, metrics_error, current)
            except MetricsUnavailable as e:
                errors.append(e)
                continue
            currents.append(entry)
            if best is None or replicas > best[0]:
                best = (replicas, name)
        # Kubernetes' rule: all metrics invalid, or some invalid while the valid ones argue for scaling down
        if best is None and not errors:
            raise MetricsUnavailable("FailedGetResourceMetric", "no metrics to compute a replica count from")
        if errors and (best is None or best[0] < current):
            first = errors[0]
            raise MetricsUnavailable(first.reason, str(first), f"invalid metrics ({len(errors)} invalid out of "
                                                               f"{len(specs)}), first error is: {first}")
        assert best is not None
        return best[0], best[1], currents

    def _one_metric(self, metric: Obj, pods: list[Obj], usage: dict[str, Obj], metrics_error: str | None,
                    current: int) -> tuple[int, str, Obj]:
        """(replicas, the metric's name in messages, its currentMetrics entry) for one metric of the spec."""
        kind = metric.get("type", "")
        if kind not in ("Resource", "ContainerResource"):
            what = kind.lower()
            raise MetricsUnavailable(f"FailedGet{kind}Metric", f"failed to get {what} metric value: unable to fetch "
                                                               "metrics from custom metrics API: pkube serves no "
                                                               "custom or external metrics API")
        member = "resource" if kind == "Resource" else "containerResource"
        source = metric[member]
        resource, container = source["name"], source.get("container")
        target = source["target"]
        reason = "FailedGetResourceMetric" if kind == "Resource" else "FailedGetContainerResourceMetric"
        utilization = target.get("averageUtilization") if target["type"] == "Utilization" else None
        what = "utilization" if utilization is not None else "resource metric value"
        if metrics_error is not None:
            raise MetricsUnavailable(reason, f"failed to get {resource} {what}: unable to get metrics for resource "
                                             f"{resource}: {metrics_error}")
        samples = [self._sample(p, usage.get(meta(p)["name"]), resource, container) for p in pods]
        average = _milli(target.get("averageValue")) if target["type"] == "AverageValue" else None
        try:
            rec = autoscaling.resource_replicas(current, samples, target_utilization=utilization,
                                                target_average=average, resource=resource, tolerance=self.tolerance)
        except autoscaling.MetricError as e:
            raise MetricsUnavailable(reason, f"failed to get {resource} {what}: {e}") from None
        name = f"{resource} {'container ' if container else ''}resource" + (
            " utilization (percentage of request)" if utilization is not None else "")
        now_value: Obj = {}
        if rec.utilization is not None:
            now_value["averageUtilization"] = rec.utilization
            raw = [s.usage for s in samples if s.usage is not None and s.ready and not s.ignored]
            now_value["averageValue"] = _quantity(resource, sum(raw) // max(1, len(raw)))
        if rec.average is not None:
            now_value["averageValue"] = _quantity(resource, rec.average)
        entry: Obj = {"name": resource, "current": now_value}
        if container:
            entry["container"] = container
        return rec.replicas, name, {"type": kind, member: entry}

    @staticmethod
    def _sample(pod: Obj, metrics: Obj | None, resource: str, container: str | None) -> autoscaling.PodSample:
        phase = (pod.get("status") or {}).get("phase")
        ignored = bool(meta(pod).get("deletionTimestamp")) or phase == "Failed"
        ready = phase != "Pending" and (resource != "cpu" or is_pod_ready(pod))
        spec = pod.get("spec") or {}
        if container:
            chosen = [c for c in spec.get("containers") or [] if c.get("name") == container]
            requests = pod_amounts({"containers": chosen})
            names = {container}
        else:
            requests = pod_amounts(spec)
            names = {c.get("name") for c in spec.get("containers") or []}
        no_request = next((str(c.get("name")) for c in spec.get("containers") or [] if c.get("name") in names
                           and resource not in ((c.get("resources") or {}).get("requests") or {})), "")
        request = None if no_request or resource not in requests else requests[resource].milli_value()
        usage: int | None = None
        if metrics is not None:
            values = [_milli((c.get("usage") or {}).get(resource, 0)) for c in metrics.get("containers") or []
                      if c.get("name") in names]
            usage = sum(v or 0 for v in values) if values else None
        return autoscaling.PodSample(meta(pod)["name"], usage, request, ready, ignored, no_request)

    async def _write(self, hpa: Obj, status: dict[str, Any]) -> None:
        if status != hpa.get("status"):
            await write_status(self.client, HPAS, hpa, status)


def _target_resource(ref: dict[str, Any]) -> Resource | None:
    api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
    res = for_kind(api_version, kind) if api_version else lookup(kind)
    return res if res is not None and "scale" in res.subresources else None


def _condition(status: dict[str, Any], type_: str, value: str, reason: str, message: str) -> None:
    """Set a condition; its lastTransitionTime changes only when its status does (Kubernetes' setCondition)."""
    conditions = status.setdefault("conditions", [])
    for c in conditions:
        if c.get("type") == type_:
            if c.get("status") != value:
                c["lastTransitionTime"] = format_time(now())
            c.update(status=value, reason=reason, message=message)
            return
    conditions.append({"type": type_, "status": value, "lastTransitionTime": format_time(now()), "reason": reason,
                       "message": message})
