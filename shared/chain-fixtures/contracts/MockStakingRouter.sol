// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// The staking-module call the router forwards target limits to; `MockNodeOperatorsRegistry` and
/// `MockCSModule` implement it.
interface ITargetLimitModule {
    function updateTargetValidatorsLimits(uint256 nodeOperatorId, uint256 targetLimitMode, uint256 targetLimit)
        external;
}

/// @title MockStakingRouter
/// @notice Test double for Lido's StakingRouter as Steward watches it: the staking-module events
/// (module added, share limit, fees, status, deposit limits, ETH deposited, incomplete exited
/// validators reporting and the per-module failure events) with Lido's exact signatures (hence
/// the same topic0 as mainnet), each emitted by an `emit...` function with the values given;
/// the views `getStakingModuleIds` and `getNodeOperatorSummary`; and
/// `updateTargetValidatorsLimits`, which forwards to the module registered under that id, as
/// the real router does.
/// @dev Written for Steward's tests, not derived from Lido's code. No roles (the real
/// `updateTargetValidatorsLimits` needs STAKING_MODULE_MANAGE_ROLE), no deposits, no fees.
/// Modules are registered with `setStakingModule` (no event: `emitStakingModuleAdded` is
/// separate); node operator summaries are whatever a test sets, not read from the module.
contract MockStakingRouter {
    /// Same members, in the same order, as Lido's `StakingRouter.StakingModuleStatus`.
    enum StakingModuleStatus {
        Active,
        DepositsPaused,
        Stopped
    }

    /// Same fields, in the same order, as Lido's `StakingRouter.NodeOperatorSummary`.
    struct NodeOperatorSummary {
        uint256 targetLimitMode;
        uint256 targetValidatorsCount;
        uint256 stuckValidatorsCount;
        uint256 refundedValidatorsCount;
        uint256 stuckPenaltyEndTimestamp;
        uint256 totalExitedValidators;
        uint256 totalDepositedValidators;
        uint256 depositableValidatorsCount;
    }

    uint256[] private moduleIds;
    mapping(uint256 stakingModuleId => address) public stakingModuleAddress;
    mapping(uint256 stakingModuleId => mapping(uint256 nodeOperatorId => NodeOperatorSummary)) private summaries;

    event StakingModuleAdded(uint256 indexed stakingModuleId, address stakingModule, string name, address createdBy);
    event StakingModuleShareLimitSet(
        uint256 indexed stakingModuleId, uint256 stakeShareLimit, uint256 priorityExitShareThreshold, address setBy
    );
    event StakingModuleFeesSet(
        uint256 indexed stakingModuleId, uint256 stakingModuleFee, uint256 treasuryFee, address setBy
    );
    event StakingModuleStatusSet(uint256 indexed stakingModuleId, StakingModuleStatus status, address setBy);
    event StakingModuleMaxDepositsPerBlockSet(
        uint256 indexed stakingModuleId, uint256 maxDepositsPerBlock, address setBy
    );
    event StakingModuleMinDepositBlockDistanceSet(
        uint256 indexed stakingModuleId, uint256 minDepositBlockDistance, address setBy
    );
    event StakingRouterETHDeposited(uint256 indexed stakingModuleId, uint256 amount);
    event StakingModuleExitedValidatorsIncompleteReporting(
        uint256 indexed stakingModuleId, uint256 unreportedExitedValidatorsCount
    );
    event ExitedAndStuckValidatorsCountsUpdateFailed(uint256 indexed stakingModuleId, bytes lowLevelRevertData);
    event RewardsMintedReportFailed(uint256 indexed stakingModuleId, bytes lowLevelRevertData);
    event WithdrawalsCredentialsChangeFailed(uint256 indexed stakingModuleId, bytes lowLevelRevertData);
    event StakingModuleExitNotificationFailed(
        uint256 indexed stakingModuleId, uint256 indexed nodeOperatorId, bytes _publicKey
    );

    error StakingModuleUnregistered();

    // ---- StakingRouter function signatures ---------------------------------------------------

    function getStakingModuleIds() external view returns (uint256[] memory stakingModuleIds) {
        return moduleIds;
    }

    /// The summary a test set (all zero by default); reverts for an unregistered module, as Lido's does.
    function getNodeOperatorSummary(uint256 _stakingModuleId, uint256 _nodeOperatorId)
        external
        view
        returns (NodeOperatorSummary memory summary)
    {
        if (stakingModuleAddress[_stakingModuleId] == address(0)) revert StakingModuleUnregistered();
        return summaries[_stakingModuleId][_nodeOperatorId];
    }

    /// Forwards to the registered module's `updateTargetValidatorsLimits(nodeOperatorId, mode,
    /// limit)`, which emits the module's `TargetValidatorsCountChanged`.
    function updateTargetValidatorsLimits(
        uint256 _stakingModuleId,
        uint256 _nodeOperatorId,
        uint256 _targetLimitMode,
        uint256 _targetLimit
    ) external {
        address module = stakingModuleAddress[_stakingModuleId];
        if (module == address(0)) revert StakingModuleUnregistered();
        ITargetLimitModule(module).updateTargetValidatorsLimits(_nodeOperatorId, _targetLimitMode, _targetLimit);
    }

    // ---- test setters (no event) -------------------------------------------------------------

    /// Register (or re-point) module `stakingModuleId`; a new id is appended to
    /// `getStakingModuleIds`. The zero address unregisters it for `getNodeOperatorSummary` and
    /// `updateTargetValidatorsLimits` but leaves it listed.
    function setStakingModule(uint256 stakingModuleId, address stakingModule) external {
        bool known = false;
        for (uint256 i = 0; i < moduleIds.length; ++i) {
            if (moduleIds[i] == stakingModuleId) {
                known = true;
                break;
            }
        }
        if (!known) moduleIds.push(stakingModuleId);
        stakingModuleAddress[stakingModuleId] = stakingModule;
    }

    function setNodeOperatorSummary(
        uint256 stakingModuleId,
        uint256 nodeOperatorId,
        NodeOperatorSummary calldata summary
    ) external {
        summaries[stakingModuleId][nodeOperatorId] = summary;
    }

    // ---- event emitters (emit only, state unchanged) -----------------------------------------

    function emitStakingModuleAdded(
        uint256 stakingModuleId,
        address stakingModule,
        string calldata name,
        address createdBy
    ) external {
        emit StakingModuleAdded(stakingModuleId, stakingModule, name, createdBy);
    }

    function emitStakingModuleShareLimitSet(
        uint256 stakingModuleId,
        uint256 stakeShareLimit,
        uint256 priorityExitShareThreshold,
        address setBy
    ) external {
        emit StakingModuleShareLimitSet(stakingModuleId, stakeShareLimit, priorityExitShareThreshold, setBy);
    }

    function emitStakingModuleFeesSet(
        uint256 stakingModuleId,
        uint256 stakingModuleFee,
        uint256 treasuryFee,
        address setBy
    ) external {
        emit StakingModuleFeesSet(stakingModuleId, stakingModuleFee, treasuryFee, setBy);
    }

    function emitStakingModuleStatusSet(uint256 stakingModuleId, StakingModuleStatus status, address setBy)
        external
    {
        emit StakingModuleStatusSet(stakingModuleId, status, setBy);
    }

    function emitStakingModuleMaxDepositsPerBlockSet(
        uint256 stakingModuleId,
        uint256 maxDepositsPerBlock,
        address setBy
    ) external {
        emit StakingModuleMaxDepositsPerBlockSet(stakingModuleId, maxDepositsPerBlock, setBy);
    }

    function emitStakingModuleMinDepositBlockDistanceSet(
        uint256 stakingModuleId,
        uint256 minDepositBlockDistance,
        address setBy
    ) external {
        emit StakingModuleMinDepositBlockDistanceSet(stakingModuleId, minDepositBlockDistance, setBy);
    }

    function emitStakingRouterETHDeposited(uint256 stakingModuleId, uint256 amount) external {
        emit StakingRouterETHDeposited(stakingModuleId, amount);
    }

    function emitStakingModuleExitedValidatorsIncompleteReporting(
        uint256 stakingModuleId,
        uint256 unreportedExitedValidatorsCount
    ) external {
        emit StakingModuleExitedValidatorsIncompleteReporting(stakingModuleId, unreportedExitedValidatorsCount);
    }

    function emitExitedAndStuckValidatorsCountsUpdateFailed(uint256 stakingModuleId, bytes calldata lowLevelRevertData)
        external
    {
        emit ExitedAndStuckValidatorsCountsUpdateFailed(stakingModuleId, lowLevelRevertData);
    }

    function emitRewardsMintedReportFailed(uint256 stakingModuleId, bytes calldata lowLevelRevertData) external {
        emit RewardsMintedReportFailed(stakingModuleId, lowLevelRevertData);
    }

    function emitWithdrawalsCredentialsChangeFailed(uint256 stakingModuleId, bytes calldata lowLevelRevertData)
        external
    {
        emit WithdrawalsCredentialsChangeFailed(stakingModuleId, lowLevelRevertData);
    }

    function emitStakingModuleExitNotificationFailed(
        uint256 stakingModuleId,
        uint256 nodeOperatorId,
        bytes calldata publicKey
    ) external {
        emit StakingModuleExitNotificationFailed(stakingModuleId, nodeOperatorId, publicKey);
    }
}
