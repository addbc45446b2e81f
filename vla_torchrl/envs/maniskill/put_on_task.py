"""The "put O on R" pick-and-place task of the paper (Sec. 5.1, Appendix A.4) as a ManiSkill env.

One (or two) objects and one (or two) receptacles lie on a table; the robot must put the first
object on the first receptacle. Every asset of the configured pools is built once, when the
scene is loaded; an episode activates some of them (placed in the placement region) and parks
the others far behind the camera, so a reset never rebuilds the scene. On the CPU simulation the
parked ones are also hidden from the renderer: they are never in view, yet the software
rasterizer still processes their meshes (at 96x96 hiding them halves the render time).

Table appearance: a "green screen". The camera renders RGB + segmentation; every pixel that is
not the robot or an active object/receptacle is replaced by the episode's table image. Changing
the table therefore needs no geometry.

Robot: WidowX-250S with the paper's setting (ManiSkill's ``widowx250s_bridgedataset_flat_table``
agent: end-effector target delta pose + gripper, sim 500 Hz / control 5 Hz) when its description
is found under ``MS_ASSET_DIR``; else Panda (``pd_ee_delta_pose``), with one log line. Actions are
given in the env's units either way: ``[dx, dy, dz]`` metres, ``[droll, dpitch, dyaw]`` radians,
gripper ``>= 0`` open / ``< 0`` close (binary).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import sapien
import torch
from mani_skill import ASSET_DIR
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.utils.registration import register_env
from mani_skill.utils.structs.pose import Pose
from mani_skill.utils.structs.types import SimConfig

from vla_torchrl.envs.asset_library import SceneAsset
from vla_torchrl.envs.maniskill.scene import (
    CAMERA_UID,
    MIN_SEPARATION,
    PANDA_BASE_POSE,
    PANDA_INIT_QPOS,
    WIDOWX_BASE_POSE,
    WIDOWX_INIT_QPOS,
    PutOnSceneConfig,
    _camera_config,
    _uniform_in_region,
    _WidowXNoCamera,
    sample_positions,
    widowx_available,
)
from vla_torchrl.envs.maniskill.stages import placed, stage_potential, update_stages

__all__ = ["PUT_ON_ENV_ID", "PutOnTask"]

logger = logging.getLogger(__name__)

PUT_ON_ENV_ID = "VLATorchRL-PutOn-v1"

PARK_ORIGIN = np.array([4.0, 4.0])  # unused assets rest here, behind the camera
ROBOT_POSE_NOISE = 0.2  # rad, uniform noise on arm joints for `robot-pose`
_UPRIGHT = [0.7071068, 0.0, -0.7071068, 0.0]  # rotates SAPIEN's x-axis shapes to z


@register_env(PUT_ON_ENV_ID, max_episode_steps=80)
class PutOnTask(BaseEnv):
    """ManiSkill env: put the first object on the first receptacle.

    Args:
        scene_config: the pools and options (:class:`PutOnSceneConfig`).
        image_size: ``(H, W)`` of the camera (intrinsics scaled from the 640x480 camera).
        robot: ``"auto"`` (WidowX when found, else Panda), ``"widowx"`` or ``"panda"``.
        seed: base seed; episode ``e`` is drawn from ``numpy.random.default_rng([seed, e])``.
        **kwargs: forwarded to :class:`mani_skill.envs.sapien_env.BaseEnv`.

    Reset options: ``{"episode_id": int | list[int]}`` (one per env; default: a counter).
    """

    SUPPORTED_OBS_MODES = ("rgb+segmentation",)
    SUPPORTED_REWARD_MODES = ("none",)

    def __init__(
        self,
        *args,
        scene_config: PutOnSceneConfig,
        image_size: tuple[int, int] = (480, 640),
        robot: Literal["auto", "widowx", "panda"] = "auto",
        seed: int = 0,
        **kwargs,
    ):
        if robot == "auto":
            robot = "widowx" if widowx_available() else "panda"
            if robot == "panda":
                from vla_torchrl.assets import fall_back

                fall_back(
                    f"the WidowX-250S description (under MS_ASSET_DIR={ASSET_DIR})",
                    "the Panda robot",
                )
        if robot not in ("widowx", "panda"):
            raise ValueError(f"robot={robot!r}; use 'auto', 'widowx' or 'panda'")
        self.robot_kind = robot
        self.scene_config = scene_config
        self.image_size = tuple(image_size)
        self.base_seed = int(seed)
        self._episode_counter = 0
        control_mode = (
            "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos"
            if robot == "widowx"
            else "pd_ee_delta_pose"
        )
        kwargs.setdefault("obs_mode", "rgb+segmentation")
        kwargs.setdefault("reward_mode", "none")
        kwargs.setdefault("control_mode", control_mode)
        super().__init__(
            *args,
            robot_uids=_WidowXNoCamera.uid if robot == "widowx" else "panda",
            **kwargs,
        )

    # -- configuration ---------------------------------------------------------------------------
    @property
    def _default_sim_config(self):
        return SimConfig(sim_freq=500, control_freq=5)  # the paper's 500 Hz / 5 Hz

    @property
    def _default_sensor_configs(self):
        return [_camera_config(*self.image_size)]

    @property
    def _default_human_render_camera_configs(self):
        return _camera_config(*self.image_size)

    def _load_agent(self, options: dict):
        pose = WIDOWX_BASE_POSE if self.robot_kind == "widowx" else PANDA_BASE_POSE
        super()._load_agent(options, pose)

    def _load_lighting(self, options: dict):
        self.scene.set_ambient_light([0.35, 0.35, 0.35])
        self.scene.add_directional_light([0.2, 0.1, -1.0], [2.0, 2.0, 2.0], shadow=False)
        self.scene.add_directional_light([-1.0, -0.4, -1.0], [0.6, 0.6, 0.6])
        self.scene.add_directional_light([1.0, 1.0, -1.0], [0.6, 0.6, 0.6])

    def _build_asset(self, asset: SceneAsset, park_index: int):
        material = sapien.physx.PhysxMaterial(
            static_friction=1.0, dynamic_friction=0.8, restitution=0.0
        )
        builder = self.scene.create_actor_builder()
        if asset.parts:
            for part in asset.parts:
                pose = sapien.Pose(list(part.offset), _UPRIGHT if part.upright else [1, 0, 0, 0])
                render = sapien.render.RenderMaterial(base_color=list(part.color))
                kw = dict(material=material, density=asset.density)
                if part.shape == "box":
                    builder.add_box_collision(pose, half_size=part.size, **kw)
                    builder.add_box_visual(pose, half_size=part.size, material=render)
                elif part.shape == "sphere":
                    builder.add_sphere_collision(pose, radius=part.size[0], **kw)
                    builder.add_sphere_visual(pose, radius=part.size[0], material=render)
                elif part.shape == "capsule":
                    builder.add_capsule_collision(pose, part.size[0], part.size[1], **kw)
                    builder.add_capsule_visual(pose, part.size[0], part.size[1], material=render)
                else:
                    builder.add_cylinder_collision(pose, part.size[0], part.size[1], **kw)
                    builder.add_cylinder_visual(pose, part.size[0], part.size[1], material=render)
        else:
            scale = [asset.scale] * 3
            builder.add_multiple_convex_collisions_from_file(
                str(asset.collision_file), scale=scale, material=material, density=asset.density
            )
            if asset.visual_file is not None:
                builder.add_visual_from_file(str(asset.visual_file), scale=scale)
            else:
                render = sapien.render.RenderMaterial(base_color=list(asset.color))
                builder.add_visual_from_file(
                    str(asset.collision_file), scale=scale, material=render
                )
        builder.initial_pose = sapien.Pose(self._park_position(park_index, asset).tolist())
        return builder.build(name=asset.uid)

    def _park_position(self, index: int, asset: SceneAsset) -> np.ndarray:
        xy = PARK_ORIGIN + np.array([0.3 * (index % 8), 0.3 * (index // 8)])
        return np.array([xy[0], xy[1], -asset.bbox_min[2] + 0.002])

    def _load_scene(self, options: dict):
        table = self.scene.create_actor_builder()
        half = [6.0, 6.0, 0.02]
        table.add_box_collision(sapien.Pose([0, 0, -0.02]), half_size=half)
        table.add_box_visual(
            sapien.Pose([0, 0, -0.02]),
            half_size=half,
            material=sapien.render.RenderMaterial(base_color=[0.5, 0.45, 0.4, 1.0]),
        )
        table.initial_pose = sapien.Pose()
        self.table = table.build_static(name="table")
        cfg = self.scene_config
        receptacles: list[SceneAsset] = list(cfg.receptacles)
        for extra in cfg.distractor_receptacles:
            if extra.uid not in {r.uid for r in receptacles}:
                receptacles.append(extra)
        self._object_assets = list(cfg.objects)
        self._receptacle_assets = receptacles
        self._n_target_receptacles = len(cfg.receptacles)
        self.object_actors = [self._build_asset(a, i) for i, a in enumerate(self._object_assets)]
        n = len(self._object_assets)
        self.receptacle_actors = [
            self._build_asset(a, n + i) for i, a in enumerate(self._receptacle_assets)
        ]
        self._table_images = None  # filled lazily (resized to the camera)

    def _after_reconfigure(self, options: dict):
        super()._after_reconfigure(options)
        robot_ids = [link.per_scene_id for link in self.agent.robot.get_links()]
        self._robot_seg_ids = torch.unique(torch.cat([i.flatten() for i in robot_ids])).cpu()
        self._object_seg_ids = torch.stack(
            [a.per_scene_id.flatten()[0] for a in self.object_actors]
        ).cpu()
        self._receptacle_seg_ids = torch.stack(
            [a.per_scene_id.flatten()[0] for a in self.receptacle_actors]
        ).cpu()
        h, w = self.image_size
        self._table_images = torch.stack(
            [torch.from_numpy(t.image((h, w)).copy()) for t in self.scene_config.tables]
        )

    # -- episodes --------------------------------------------------------------------------------
    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        b = self.num_envs
        if not hasattr(self, "object_index"):
            k_obj, k_rec = self.scene_config.num_objects, self.scene_config.num_receptacles
            k_rec += 1 if self.scene_config.distractor_receptacles else 0
            self.object_index = torch.zeros(b, k_obj, dtype=torch.long)
            self.receptacle_index = torch.zeros(b, k_rec, dtype=torch.long)
            self.table_index = torch.zeros(b, dtype=torch.long)
            self.episode_id = torch.zeros(b, dtype=torch.long)
            self.hold_count = torch.zeros(b, dtype=torch.long, device=self.device)
            self.grasped_so_far = torch.zeros(b, dtype=torch.bool, device=self.device)
            self.held_so_far = torch.zeros(b, dtype=torch.bool, device=self.device)
            self.success_so_far = torch.zeros(b, dtype=torch.bool, device=self.device)
            self.potential = torch.zeros(b, device=self.device)
        ids = options.get("episode_id")
        env_list = env_idx.cpu().tolist()
        if ids is None:
            ids = [self._episode_counter + i for i in range(len(env_list))]
            self._episode_counter += len(env_list)
        elif isinstance(ids, int | np.integer):
            ids = [int(ids)]
        ids = [int(i) for i in (ids.tolist() if torch.is_tensor(ids) else ids)]
        if len(ids) != len(env_list):
            raise ValueError(f"reset got {len(ids)} episode ids for {len(env_list)} envs")

        positions = {}  # actor -> (env, xyz, yaw)
        qpos_all = []
        for env, episode in zip(env_list, ids):
            rng = np.random.default_rng([self.base_seed, episode])
            self.episode_id[env] = episode
            layout, qpos = self._sample_episode(rng, env)
            qpos_all.append(qpos)
            for actor, xyz, yaw in layout:
                positions[(id(actor), env)] = (actor, xyz, yaw)
        # every pool actor: active ones where sampled, the others parked
        assets = [
            *zip(self.object_actors, self._object_assets),
            *zip(self.receptacle_actors, self._receptacle_assets),
        ]
        for i, (actor, asset) in enumerate(assets):
            p = np.repeat(self._park_position(i, asset)[None], len(env_list), 0)
            yaws = np.zeros(len(env_list))
            for j, env in enumerate(env_list):
                if (id(actor), env) in positions:
                    _, p[j], yaws[j] = positions[(id(actor), env)]
            q = np.stack([np.cos(yaws / 2), 0 * yaws, 0 * yaws, np.sin(yaws / 2)], -1)
            actor.set_pose(
                Pose.create_from_pq(
                    p=torch.as_tensor(p, dtype=torch.float32),
                    q=torch.as_tensor(q, dtype=torch.float32),
                )
            )
            actor.set_linear_velocity(torch.zeros(len(env_list), 3))
            actor.set_angular_velocity(torch.zeros(len(env_list), 3))
            if not self.gpu_sim_enabled:  # CPU: one scene, env_list == [0]
                _set_render_visibility(actor, (id(actor), env_list[0]) in positions)
        qpos = torch.as_tensor(np.stack(qpos_all), dtype=torch.float32)
        base = WIDOWX_BASE_POSE if self.robot_kind == "widowx" else PANDA_BASE_POSE
        self.agent.robot.set_pose(Pose.create_from_pq(p=base.p, q=base.q))
        self.agent.reset(init_qpos=qpos)
        # hold the initial joints while settling: the drive targets otherwise keep the previous
        # episode's last command, and the arm would start each episode from a history-dependent
        # pose (same seed + episode id, different first frame)
        robot = self.agent.robot
        robot.set_joint_drive_targets(qpos.to(self.device), joints=robot.get_active_joints())
        self._settle(0.3)
        self.hold_count[env_idx] = 0
        self.grasped_so_far[env_idx] = False
        self.held_so_far[env_idx] = False
        self.success_so_far[env_idx] = False
        self.potential[env_idx] = 0.0

    def _settle(self, seconds: float) -> None:
        if self.gpu_sim_enabled:
            self.scene._gpu_apply_all()
        for _ in range(int(self.sim_freq * seconds)):
            self.scene.step()
        if self.gpu_sim_enabled:
            self.scene._gpu_fetch_all()

    def _sample_episode(self, rng: np.random.Generator, env: int):
        """Pick assets, table, positions and initial joints of env ``env``'s episode."""
        cfg = self.scene_config
        obj_idx = rng.choice(len(cfg.objects), size=cfg.num_objects, replace=False)
        rec_idx = list(rng.choice(len(cfg.receptacles), size=cfg.num_receptacles, replace=False))
        if cfg.distractor_receptacles:
            names = {cfg.receptacles[i].uid for i in rec_idx}
            choices = [a for a in cfg.distractor_receptacles if a.uid not in names]
            pick = choices[int(rng.integers(len(choices)))]
            rec_idx.append(
                next(i for i, a in enumerate(self._receptacle_assets) if a.uid == pick.uid)
            )
        table = int(rng.integers(len(cfg.tables)))
        actors = [(self.object_actors[i], self._object_assets[i]) for i in obj_idx]
        actors += [(self.receptacle_actors[i], self._receptacle_assets[i]) for i in rec_idx]
        radii = [0.5 * float(max(a.size[0], a.size[1])) for _, a in actors]
        xy = sample_positions(rng, radii, placement=cfg.placement)
        layout = []
        for n, ((actor, asset), p) in enumerate(zip(actors, xy)):
            yaw = 0.0
            if n < len(obj_idx):
                yaw = float(rng.integers(cfg.yaw_choices)) * np.pi / cfg.yaw_choices
            layout.append((actor, np.array([p[0], p[1], -asset.bbox_min[2] + 0.002]), yaw))
        qpos = (WIDOWX_INIT_QPOS if self.robot_kind == "widowx" else PANDA_INIT_QPOS).copy()
        if cfg.random_robot_pose:
            n_arm = len(qpos) - 2
            qpos[:n_arm] += rng.uniform(-ROBOT_POSE_NOISE, ROBOT_POSE_NOISE, size=n_arm)
        self.object_index[env] = torch.as_tensor(obj_idx, dtype=torch.long)
        self.receptacle_index[env] = torch.as_tensor(rec_idx, dtype=torch.long)
        self.table_index[env] = table
        return layout, qpos

    # -- observation -----------------------------------------------------------------------------
    def composite(self, obs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Green-screen the camera frame: table image behind robot + active objects/receptacles.

        Returns:
            ``(rgb uint8 [B, H, W, 3], foreground bool [B, H, W])``.
        """
        cam = obs["sensor_data"][CAMERA_UID]
        rgb, seg = cam["rgb"], cam["segmentation"][..., 0].long()
        keep = self.foreground_ids().to(seg.device)  # [B, K]
        fg = (seg[..., None] == keep[:, None, None, :]).any(-1)
        table = self._table_images[self.table_index].to(rgb.device)
        out = torch.where(fg[..., None], rgb, table)
        return out, fg

    def foreground_ids(self) -> torch.Tensor:
        """Segmentation ids of the robot and the active objects/receptacles, ``[B, K]``."""
        objs = self._object_seg_ids[self.object_index]
        recs = self._receptacle_seg_ids[self.receptacle_index]
        robot = self._robot_seg_ids[None].expand(self.num_envs, -1)
        return torch.cat([robot, objs, recs], dim=1)

    def instructions(self, template: str) -> list[str]:
        """The instruction of each env, ``template`` filled with the first object/receptacle."""
        from vla_torchrl.envs.instructions import format_instruction

        return [
            format_instruction(
                template,
                self._object_assets[int(self.object_index[b, 0])].name,
                self._receptacle_assets[int(self.receptacle_index[b, 0])].name,
            )
            for b in range(self.num_envs)
        ]

    # -- task state ------------------------------------------------------------------------------
    def _pool_positions(self, actors) -> torch.Tensor:
        return torch.stack([a.pose.p for a in actors], 1)  # [B, N, 3]

    def target_object_pose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Position [B, 3] and quaternion [B, 4] of the object to move."""
        p = torch.stack([a.pose.p for a in self.object_actors], 1)
        q = torch.stack([a.pose.q for a in self.object_actors], 1)
        idx = self.object_index[:, 0].to(p.device)
        ar = torch.arange(self.num_envs, device=p.device)
        return p[ar, idx], q[ar, idx]

    def target_receptacle_position(self) -> torch.Tensor:
        """Position [B, 3] of the target receptacle."""
        p = self._pool_positions(self.receptacle_actors)
        idx = self.receptacle_index[:, 0].to(p.device)
        return p[torch.arange(self.num_envs, device=p.device), idx]

    def target_assets(self, env: int = 0) -> tuple[SceneAsset, SceneAsset]:
        """The (object, receptacle) assets that env ``env`` must use."""
        return (
            self._object_assets[int(self.object_index[env, 0])],
            self._receptacle_assets[int(self.receptacle_index[env, 0])],
        )

    def evaluate(self) -> dict:
        """Instantaneous ``is_grasped`` / ``on_target`` of the target object, per env.

        ``success``: on the target after a grasp at this or an earlier step, held or released
        (:mod:`~vla_torchrl.envs.maniskill.stages` says why: the paper's text and the reference).
        """
        b = self.num_envs
        grasped = torch.zeros(b, dtype=torch.bool, device=self.device)
        on_target = torch.zeros(b, dtype=torch.bool, device=self.device)
        if not hasattr(self, "object_index"):
            return {"is_grasped": grasped, "on_target": on_target, "success": on_target}
        for i in torch.unique(self.object_index[:, 0]).tolist():
            rows = (self.object_index[:, 0] == i).to(self.device)
            g = self.agent.is_grasping(self.object_actors[i])
            grasped = torch.where(rows, g, grasped)
        obj_p, _ = self.target_object_pose()
        rec_p = self.target_receptacle_position()
        for e in range(b):
            obj_a, rec_a = self.target_assets(e)
            rec_actor = self.receptacle_actors[int(self.receptacle_index[e, 0])]
            obj_actor = self.object_actors[int(self.object_index[e, 0])]
            half = rec_a.size[:2] / 2 + 0.005
            d = (obj_p[e, :2] - rec_p[e, :2]).abs().cpu().numpy()
            inside = bool(d[0] <= half[0] and d[1] <= half[1])
            above = bool(obj_p[e, 2] > rec_p[e, 2])
            force = self.scene.get_pairwise_contact_forces(obj_actor, rec_actor).reshape(-1, 3)
            touching = bool(torch.linalg.norm(force[min(e, len(force) - 1)]) > 0.05)
            on_target[e] = inside and above and touching
        # success needs a grasp first, not a release (reference run: success & grasped so far)
        success = placed(on_target, self.grasped_so_far | grasped)
        return {"is_grasped": grasped, "on_target": on_target, "success": success}

    # -- stepping --------------------------------------------------------------------------------
    def to_controller_action(self, action: torch.Tensor) -> torch.Tensor:
        """Map env-unit actions [B, 7] (m, rad, gripper sign) to the robot controller's action."""
        action = torch.as_tensor(action, dtype=torch.float32, device=self.device).reshape(-1, 7)
        grip = torch.where(action[:, 6:7] >= 0, 1.0, -1.0)  # binary: >= 0 open, < 0 close
        if self.robot_kind == "widowx":
            return torch.cat([action[:, :6], grip], dim=1)
        # Panda pd_ee_delta_pose normalises [-1, 1] to +-0.1 m and +-0.1 rad; mani_skill 3.0.1
        # scales the rotation by ``rot_lower`` (= -0.1), which flips its sign: undo that here
        pos = (action[:, :3] / 0.1).clamp(-1, 1)
        rot = (-action[:, 3:6] / 0.1).clamp(-1, 1)
        return torch.cat([pos, rot, grip], dim=1)

    def _after_control_step(self):
        super()._after_control_step()
        step = self.scene_config.reposition_step
        # ``_elapsed_steps`` still counts the steps before this one
        if step is not None:
            rows = (self._elapsed_steps + 1) == step
            if bool(rows.any()):
                self._reposition_objects(rows)

    def _reposition_objects(self, rows: torch.Tensor) -> None:
        """Teleport the target object of the ``rows`` envs to a new random free table spot."""
        p, q = self.target_object_pose()
        for e in torch.nonzero(rows).flatten().tolist():
            rng = np.random.default_rng([self.base_seed, int(self.episode_id[e]), 5])
            others = []
            for i in self.object_index[e, 1:].tolist():
                others.append((self.object_actors[i], self._object_assets[i]))
            for i in self.receptacle_index[e].tolist():
                others.append((self.receptacle_actors[i], self._receptacle_assets[i]))
            obj_asset = self._object_assets[int(self.object_index[e, 0])]
            r = 0.5 * float(max(obj_asset.size[:2]))
            fixed = [
                (
                    a.pose.p[e if a.pose.p.shape[0] > 1 else 0, :2].cpu().numpy(),
                    0.5 * float(max(s.size[:2])),
                )
                for a, s in others
            ]
            old = p[e, :2].cpu().numpy()
            for _ in range(1000):
                xy = _uniform_in_region(rng, "train")
                ok = all(np.linalg.norm(xy - c) > max(MIN_SEPARATION, r + rr) for c, rr in fixed)
                if ok and np.linalg.norm(xy - old) > MIN_SEPARATION:
                    break
            actor = self.object_actors[int(self.object_index[e, 0])]
            new_p = actor.pose.p.clone()
            new_p[e if new_p.shape[0] > 1 else 0] = torch.tensor(
                [xy[0], xy[1], -obj_asset.bbox_min[2] + 0.002], dtype=new_p.dtype
            )
            actor.set_pose(Pose.create_from_pq(p=new_p, q=actor.pose.q))
            actor.set_linear_velocity(torch.zeros_like(new_p))
            actor.set_angular_velocity(torch.zeros_like(new_p))

    def step(self, action):
        """Step with an env-unit action; reward = potential difference (return = final potential).

        The info dict holds the metric flags ``grasped``, ``continuous_grasp``, ``success``
        ("has happened in this episode so far") and the instantaneous ``is_grasped``.
        """
        obs, _, _, _, info = super().step(self.to_controller_action(action))
        # stage flags and potential-based reward (Sec. 5.1; definitions and choices in stages.py):
        # Phi = 0.1 grasped + 0.1 held + 1.0 success, r_t = Phi_t - Phi_{t-1}
        stages = update_stages(
            info["is_grasped"].to(self.device),
            info["on_target"].to(self.device),
            self.hold_count,
            self.grasped_so_far,
            self.held_so_far,
            self.success_so_far,
        )
        self.hold_count, self.grasped_so_far, self.held_so_far, self.success_so_far = stages
        potential = stage_potential(self.grasped_so_far, self.held_so_far, self.success_so_far)
        reward = potential - self.potential
        self.potential = potential
        info = dict(info)
        info.update(
            grasped=self.grasped_so_far.clone(),
            continuous_grasp=self.held_so_far.clone(),
            success=self.success_so_far.clone(),
        )
        terminated = self.success_so_far.clone()
        truncated = self._elapsed_steps >= 80
        return obs, reward, terminated, truncated, info


def _set_render_visibility(actor, visible: bool) -> None:
    """Show or hide ``actor``'s visual bodies in the renderer (CPU simulation: one scene).

    Physics is untouched; only what the camera rasterizes changes.
    """
    for obj in actor._objs:
        body = obj.find_component_by_type(sapien.render.RenderBodyComponent)
        if body is not None:
            body.visibility = 1.0 if visible else 0.0
