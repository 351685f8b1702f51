// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// An EigenLayer operator set: an AVS address and a set id. Declared at file level, as EigenLayer
/// does, so the ABI's internal type is `struct OperatorSet`.
struct OperatorSet {
    address avs;
    uint32 id;
}

/// Stands for EigenLayer's strategy contracts: only its address is used (ABI type `address`).
interface IStrategy {}

/// @title MockAllocationManager
/// @notice Test double for the parts of EigenLayer's AllocationManager (slashing release) that
/// Steward watches. Its events `AllocationUpdated`, `OperatorSlashed`,
/// `OperatorAddedToOperatorSet`, `OperatorRemovedFromOperatorSet`, `AllocationDelaySet`,
/// `MaxMagnitudeUpdated` and `EncumberedMagnitudeUpdated` have EigenLayer's exact signatures
/// (hence the same topic0 as mainnet); each has an `emit...` function that emits it with the
/// values given. The views `getAllocation`, `getMaxMagnitude` and `DEALLOCATION_DELAY` and the
/// action `modifyAllocations` have EigenLayer's function signatures.
/// @dev Written for Steward's tests, not derived from EigenLayer's code. No access control, no
/// delays, no slashing arithmetic. `modifyAllocations` applies each new magnitude at once
/// (`effectBlock` = the current block, `pendingDiff` 0) and emits `AllocationUpdated` per
/// strategy; EigenLayer itself would queue a decrease for `DEALLOCATION_DELAY` blocks and an
/// increase for the operator's allocation delay. An operator's max magnitude is 1e18 (WAD)
/// until a test sets it, as in EigenLayer.
contract MockAllocationManager {
    uint64 public constant WAD = 1e18;

    struct AllocateParams {
        OperatorSet operatorSet;
        IStrategy[] strategies;
        uint64[] newMagnitudes;
    }

    struct Allocation {
        uint64 currentMagnitude;
        int128 pendingDiff;
        uint32 effectBlock;
    }

    struct MaxMagnitude {
        uint64 value;
        bool set;
    }

    /// Mainnet's value (MIN_WITHDRAWAL_DELAY_BLOCKS, 14 days of 12 s blocks); settable.
    uint32 public DEALLOCATION_DELAY = 100_800;

    mapping(address operator => mapping(bytes32 operatorSetKey => mapping(IStrategy => Allocation))) private
        allocations;
    mapping(address operator => mapping(IStrategy => MaxMagnitude)) private maxMagnitudes;

    event AllocationDelaySet(address operator, uint32 delay, uint32 effectBlock);
    event AllocationUpdated(
        address operator, OperatorSet operatorSet, IStrategy strategy, uint64 magnitude, uint32 effectBlock
    );
    event EncumberedMagnitudeUpdated(address operator, IStrategy strategy, uint64 encumberedMagnitude);
    event MaxMagnitudeUpdated(address operator, IStrategy strategy, uint64 maxMagnitude);
    event OperatorSlashed(
        address operator, OperatorSet operatorSet, IStrategy[] strategies, uint256[] wadSlashed, string description
    );
    event OperatorAddedToOperatorSet(address indexed operator, OperatorSet operatorSet);
    event OperatorRemovedFromOperatorSet(address indexed operator, OperatorSet operatorSet);

    error InputArrayLengthMismatch();

    // ---- EigenLayer function signatures ------------------------------------------------------

    function modifyAllocations(address operator, AllocateParams[] calldata params) external {
        for (uint256 i = 0; i < params.length; ++i) {
            AllocateParams calldata p = params[i];
            if (p.strategies.length != p.newMagnitudes.length) revert InputArrayLengthMismatch();
            bytes32 key = _key(p.operatorSet);
            for (uint256 j = 0; j < p.strategies.length; ++j) {
                allocations[operator][key][p.strategies[j]] = Allocation(p.newMagnitudes[j], 0, uint32(block.number));
                emit AllocationUpdated(
                    operator, p.operatorSet, p.strategies[j], p.newMagnitudes[j], uint32(block.number)
                );
            }
        }
    }

    function getAllocation(address operator, OperatorSet memory operatorSet, IStrategy strategy)
        external
        view
        returns (Allocation memory)
    {
        return allocations[operator][_key(operatorSet)][strategy];
    }

    function getMaxMagnitude(address operator, IStrategy strategy) external view returns (uint64) {
        MaxMagnitude storage m = maxMagnitudes[operator][strategy];
        return m.set ? m.value : WAD;
    }

    // ---- test setters (no event) -------------------------------------------------------------

    function setAllocation(
        address operator,
        OperatorSet calldata operatorSet,
        IStrategy strategy,
        uint64 currentMagnitude,
        int128 pendingDiff,
        uint32 effectBlock
    ) external {
        allocations[operator][_key(operatorSet)][strategy] = Allocation(currentMagnitude, pendingDiff, effectBlock);
    }

    function setMaxMagnitude(address operator, IStrategy strategy, uint64 maxMagnitude) external {
        maxMagnitudes[operator][strategy] = MaxMagnitude(maxMagnitude, true);
    }

    function setDeallocationDelay(uint32 delay) external {
        DEALLOCATION_DELAY = delay;
    }

    // ---- event emitters (emit only, state unchanged) -----------------------------------------

    function emitAllocationUpdated(
        address operator,
        OperatorSet calldata operatorSet,
        IStrategy strategy,
        uint64 magnitude,
        uint32 effectBlock
    ) external {
        emit AllocationUpdated(operator, operatorSet, strategy, magnitude, effectBlock);
    }

    function emitOperatorSlashed(
        address operator,
        OperatorSet calldata operatorSet,
        IStrategy[] calldata strategies,
        uint256[] calldata wadSlashed,
        string calldata description
    ) external {
        emit OperatorSlashed(operator, operatorSet, strategies, wadSlashed, description);
    }

    function emitOperatorAddedToOperatorSet(address operator, OperatorSet calldata operatorSet) external {
        emit OperatorAddedToOperatorSet(operator, operatorSet);
    }

    function emitOperatorRemovedFromOperatorSet(address operator, OperatorSet calldata operatorSet) external {
        emit OperatorRemovedFromOperatorSet(operator, operatorSet);
    }

    function emitAllocationDelaySet(address operator, uint32 delay, uint32 effectBlock) external {
        emit AllocationDelaySet(operator, delay, effectBlock);
    }

    function emitMaxMagnitudeUpdated(address operator, IStrategy strategy, uint64 maxMagnitude) external {
        emit MaxMagnitudeUpdated(operator, strategy, maxMagnitude);
    }

    function emitEncumberedMagnitudeUpdated(address operator, IStrategy strategy, uint64 encumberedMagnitude)
        external
    {
        emit EncumberedMagnitudeUpdated(operator, strategy, encumberedMagnitude);
    }

    // ---- internals ---------------------------------------------------------------------------

    function _key(OperatorSet memory operatorSet) private pure returns (bytes32) {
        return keccak256(abi.encode(operatorSet.avs, operatorSet.id));
    }
}
