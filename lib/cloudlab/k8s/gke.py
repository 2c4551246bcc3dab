"""The same steps on Google Kubernetes Engine, as real ``gcloud`` commands, never executed.

>>> print(create_cluster("demo", run_id="r1"))    # doctest: +NORMALIZE_WHITESPACE
# Google Cloud: NOT EXECUTED HERE: run it yourself with the cloud's CLI, logged in, if you mean it
# a zonal Standard cluster; Autopilot would be `gcloud container clusters create-auto`
gcloud container clusters create demo --zone=us-central1-a --num-nodes=2 \\
  --machine-type=e2-standard-2 --labels=cloudlab-run-id=r1
"""

from __future__ import annotations

from ..multicloud import Command


def create_cluster(name: str, *, run_id: str, zone: str = "us-central1-a", nodes: int = 2,
                   machine_type: str = "e2-standard-2") -> Command:
    """``gcloud container clusters create``: the managed control plane plus ``nodes`` VMs."""
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_id.lower())[:63]
    return Command("Google Cloud", ["gcloud", "container", "clusters", "create", name,
                                    f"--zone={zone}", f"--num-nodes={nodes}",
                                    f"--machine-type={machine_type}",
                                    f"--labels=cloudlab-run-id={label}"],
                   "a zonal Standard cluster; Autopilot would be "
                   "`gcloud container clusters create-auto`")


def get_credentials(name: str, zone: str = "us-central1-a") -> Command:
    """Write the cluster's entry into ~/.kube/config: then the kubeconfig backend uses it."""
    return Command("Google Cloud", ["gcloud", "container", "clusters", "get-credentials", name,
                                    f"--zone={zone}"],
                   "afterwards: cl.k8s.Cluster('kubeconfig') talks to it with the same verbs")


def enable_autoscaling(name: str, *, zone: str = "us-central1-a", min_nodes: int = 1,
                       max_nodes: int = 5) -> Command:
    """The cluster autoscaler: nodes follow pending pods (the HPA only adds pods)."""
    return Command("Google Cloud", ["gcloud", "container", "clusters", "update", name,
                                    f"--zone={zone}", "--enable-autoscaling",
                                    f"--min-nodes={min_nodes}", f"--max-nodes={max_nodes}",
                                    "--node-pool=default-pool"],
                   "node autoscaling; the HPA manifest itself is the same as on kwok")


def delete_cluster(name: str, zone: str = "us-central1-a") -> Command:
    return Command("Google Cloud", ["gcloud", "container", "clusters", "delete", name,
                                    f"--zone={zone}", "--quiet"],
                   "the nodes are billed until this runs")


def walkthrough(name: str, *, run_id: str, zone: str = "us-central1-a") -> list[Command]:
    """Create, connect, autoscale nodes, delete: the GKE side of the notebook."""
    return [create_cluster(name, run_id=run_id, zone=zone), get_credentials(name, zone),
            enable_autoscaling(name, zone=zone), delete_cluster(name, zone)]
