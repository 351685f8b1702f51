// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title OperatorRegistry
/// @notice A set of staking operators with a stake each, for concentration tests (share caps,
/// HHI, Nakamoto coefficient). Every change emits an event; `getOperators()` returns the whole
/// set in insertion order (removal moves the last operator into the freed slot).
/// @dev Written for Steward's tests. No access control.
contract OperatorRegistry {
    address[] private operators;
    mapping(address operator => uint256) public stakeOf;
    /// One-based position in `operators`; 0 when absent.
    mapping(address operator => uint256) private position;
    uint256 public totalStake;

    event OperatorAdded(address indexed operator, uint256 stake);
    event OperatorRemoved(address indexed operator, uint256 stake);
    event StakeChanged(address indexed operator, uint256 oldStake, uint256 newStake);

    error ZeroAddress();
    error AlreadyRegistered(address operator);
    error NotRegistered(address operator);

    function addOperator(address operator, uint256 stake) external {
        if (operator == address(0)) revert ZeroAddress();
        if (position[operator] != 0) revert AlreadyRegistered(operator);
        operators.push(operator);
        position[operator] = operators.length;
        stakeOf[operator] = stake;
        totalStake += stake;
        emit OperatorAdded(operator, stake);
    }

    function setStake(address operator, uint256 stake) external {
        if (position[operator] == 0) revert NotRegistered(operator);
        uint256 old = stakeOf[operator];
        stakeOf[operator] = stake;
        totalStake = totalStake - old + stake;
        emit StakeChanged(operator, old, stake);
    }

    function removeOperator(address operator) external {
        uint256 pos = position[operator];
        if (pos == 0) revert NotRegistered(operator);
        address last = operators[operators.length - 1];
        operators[pos - 1] = last;
        position[last] = pos;
        operators.pop();
        delete position[operator];
        uint256 stake = stakeOf[operator];
        delete stakeOf[operator];
        totalStake -= stake;
        emit OperatorRemoved(operator, stake);
    }

    function isOperator(address operator) external view returns (bool) {
        return position[operator] != 0;
    }

    function operatorCount() external view returns (uint256) {
        return operators.length;
    }

    function getOperators() external view returns (address[] memory addrs, uint256[] memory stakes) {
        addrs = operators;
        stakes = new uint256[](addrs.length);
        for (uint256 i = 0; i < addrs.length; ++i) {
            stakes[i] = stakeOf[addrs[i]];
        }
    }
}

/// @title MockNodeOperatorsRegistry
/// @notice Emits `TargetValidatorsCountChanged` in the layout of Lido's curated
/// NodeOperatorsRegistry: data = (targetValidatorsCount, targetLimitMode).
/// @dev Same event signature, hence the same topic0, as `MockCSModule`'s, with the two data
/// words in the opposite order: a decoder must pick the layout by emitting address.
contract MockNodeOperatorsRegistry {
    struct TargetLimit {
        uint256 mode;
        uint256 limit;
    }

    mapping(uint256 nodeOperatorId => TargetLimit) public targetLimits;

    event TargetValidatorsCountChanged(
        uint256 indexed nodeOperatorId, uint256 targetValidatorsCount, uint256 targetLimitMode
    );

    /// Mode 0 off, 1 soft, 2 forced (boosted exits).
    function updateTargetValidatorsLimits(uint256 nodeOperatorId, uint256 targetLimitMode, uint256 targetLimit)
        external
    {
        targetLimits[nodeOperatorId] = TargetLimit(targetLimitMode, targetLimit);
        emit TargetValidatorsCountChanged(nodeOperatorId, targetLimit, targetLimitMode);
    }
}

/// @title MockCSModule
/// @notice Emits `TargetValidatorsCountChanged` in the layout of Lido's Community Staking
/// Module: data = (targetLimitMode, targetValidatorsCount).
/// @dev See `MockNodeOperatorsRegistry`: same topic0, data words in the opposite order.
contract MockCSModule {
    struct TargetLimit {
        uint256 mode;
        uint256 limit;
    }

    mapping(uint256 nodeOperatorId => TargetLimit) public targetLimits;

    event TargetValidatorsCountChanged(
        uint256 indexed nodeOperatorId, uint256 targetLimitMode, uint256 targetValidatorsCount
    );

    /// Mode 0 off, 1 soft, 2 forced (boosted exits).
    function updateTargetValidatorsLimits(uint256 nodeOperatorId, uint256 targetLimitMode, uint256 targetLimit)
        external
    {
        targetLimits[nodeOperatorId] = TargetLimit(targetLimitMode, targetLimit);
        emit TargetValidatorsCountChanged(nodeOperatorId, targetLimitMode, targetLimit);
    }
}
