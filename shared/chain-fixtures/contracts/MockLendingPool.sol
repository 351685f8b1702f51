// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title MockLendingPool
/// @notice Test double for the parts of an Aave v3 Pool that Steward watches: the account view
/// `getUserAccountData`, and the events `Borrow`, `Repay`, `Supply`, `LiquidationCall` and
/// `ReserveDataUpdated` with Aave v3's exact signatures (so their topic0 matches mainnet).
/// @dev Written for Steward's tests, not derived from Aave's code. No access control, no
/// oracle, no interest: account data is whatever a test sets with `setUserAccountData`, and
/// the pool's own operations only move the mock per-asset balances below and adjust the
/// account totals one base unit per token unit. The health factor is never recomputed.
contract MockLendingPool {
    /// Liquidations are allowed below this health factor (1.0 with 18 decimals).
    uint256 public constant HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 1e18;
    /// Above this health factor (and below 1.0) at most half of a debt can be liquidated at once.
    uint256 public constant CLOSE_FACTOR_HF_THRESHOLD = 0.95e18;
    uint256 public constant DEFAULT_LIQUIDATION_CLOSE_FACTOR_BPS = 5_000;
    uint256 public constant MAX_LIQUIDATION_CLOSE_FACTOR_BPS = 10_000;
    /// Collateral seized per unit of debt covered, in basis points (a 5% bonus).
    uint256 public constant LIQUIDATION_BONUS_BPS = 10_500;

    struct AccountData {
        uint256 totalCollateralBase;
        uint256 totalDebtBase;
        uint256 availableBorrowsBase;
        uint256 currentLiquidationThreshold;
        uint256 ltv;
        uint256 healthFactor;
        bool configured;
    }

    struct ReserveRates {
        uint256 liquidityRate;
        uint256 stableBorrowRate;
        uint256 variableBorrowRate;
        uint256 liquidityIndex;
        uint256 variableBorrowIndex;
    }

    mapping(address user => AccountData) private accounts;
    mapping(address reserve => ReserveRates) public reserveRates;
    /// Supplied (aToken) balance per asset and account.
    mapping(address asset => mapping(address account => uint256)) public collateralBalance;
    /// Borrowed balance per asset and account.
    mapping(address asset => mapping(address account => uint256)) public debtBalance;
    /// Underlying tokens paid out to an account (liquidators that do not take aTokens).
    mapping(address asset => mapping(address account => uint256)) public walletBalance;

    event Supply(
        address indexed reserve, address user, address indexed onBehalfOf, uint256 amount, uint16 indexed referralCode
    );
    event Borrow(
        address indexed reserve,
        address user,
        address indexed onBehalfOf,
        uint256 amount,
        uint8 interestRateMode,
        uint256 borrowRate,
        uint16 indexed referralCode
    );
    event Repay(address indexed reserve, address indexed user, address indexed repayer, uint256 amount, bool useATokens);
    event LiquidationCall(
        address indexed collateralAsset,
        address indexed debtAsset,
        address indexed user,
        uint256 debtToCover,
        uint256 liquidatedCollateralAmount,
        address liquidator,
        bool receiveAToken
    );
    event ReserveDataUpdated(
        address indexed reserve,
        uint256 liquidityRate,
        uint256 stableBorrowRate,
        uint256 variableBorrowRate,
        uint256 liquidityIndex,
        uint256 variableBorrowIndex
    );

    error InvalidAmount();
    error InvalidInterestRateMode();
    error HealthFactorNotBelowThreshold();
    error SpecifiedCurrencyNotBorrowedByUser();
    error CollateralCannotBeLiquidated();
    error NotEnoughCollateral();

    // ---- views -------------------------------------------------------------------------------

    /// Aave v3's account view. An account no test has configured has no position and, as in
    /// Aave, a health factor of type(uint256).max.
    function getUserAccountData(address user)
        external
        view
        returns (
            uint256 totalCollateralBase,
            uint256 totalDebtBase,
            uint256 availableBorrowsBase,
            uint256 currentLiquidationThreshold,
            uint256 ltv,
            uint256 healthFactor
        )
    {
        AccountData storage a = accounts[user];
        return (
            a.totalCollateralBase,
            a.totalDebtBase,
            a.availableBorrowsBase,
            a.currentLiquidationThreshold,
            a.ltv,
            _healthFactor(a)
        );
    }

    // ---- test setters ------------------------------------------------------------------------

    function setUserAccountData(
        address user,
        uint256 totalCollateralBase,
        uint256 totalDebtBase,
        uint256 availableBorrowsBase,
        uint256 currentLiquidationThreshold,
        uint256 ltv,
        uint256 healthFactor
    ) external {
        accounts[user] = AccountData({
            totalCollateralBase: totalCollateralBase,
            totalDebtBase: totalDebtBase,
            availableBorrowsBase: availableBorrowsBase,
            currentLiquidationThreshold: currentLiquidationThreshold,
            ltv: ltv,
            healthFactor: healthFactor,
            configured: true
        });
    }

    function setHealthFactor(address user, uint256 healthFactor) external {
        AccountData storage a = accounts[user];
        a.healthFactor = healthFactor;
        a.configured = true;
    }

    /// Set an account's mock balances of one asset directly (no event).
    function setBalances(address asset, address user, uint256 collateral, uint256 debt) external {
        collateralBalance[asset][user] = collateral;
        debtBalance[asset][user] = debt;
    }

    /// Set a reserve's rates and indexes and emit `ReserveDataUpdated`, as Aave does on every
    /// state-changing operation on a reserve.
    function setReserveData(
        address reserve,
        uint256 liquidityRate,
        uint256 stableBorrowRate,
        uint256 variableBorrowRate,
        uint256 liquidityIndex,
        uint256 variableBorrowIndex
    ) external {
        reserveRates[reserve] = ReserveRates({
            liquidityRate: liquidityRate,
            stableBorrowRate: stableBorrowRate,
            variableBorrowRate: variableBorrowRate,
            liquidityIndex: liquidityIndex,
            variableBorrowIndex: variableBorrowIndex
        });
        emit ReserveDataUpdated(
            reserve, liquidityRate, stableBorrowRate, variableBorrowRate, liquidityIndex, variableBorrowIndex
        );
    }

    // ---- pool operations (Aave v3 function signatures) ---------------------------------------

    function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external {
        if (amount == 0) revert InvalidAmount();
        collateralBalance[asset][onBehalfOf] += amount;
        accounts[onBehalfOf].totalCollateralBase += amount;
        emit Supply(asset, msg.sender, onBehalfOf, amount, referralCode);
    }

    /// `interestRateMode` 1 is stable, 2 variable; the event carries the reserve's matching rate.
    function borrow(address asset, uint256 amount, uint256 interestRateMode, uint16 referralCode, address onBehalfOf)
        external
    {
        if (amount == 0) revert InvalidAmount();
        if (interestRateMode != 1 && interestRateMode != 2) revert InvalidInterestRateMode();
        debtBalance[asset][onBehalfOf] += amount;
        accounts[onBehalfOf].totalDebtBase += amount;
        ReserveRates storage r = reserveRates[asset];
        uint256 rate = interestRateMode == 1 ? r.stableBorrowRate : r.variableBorrowRate;
        emit Borrow(asset, msg.sender, onBehalfOf, amount, uint8(interestRateMode), rate, referralCode);
    }

    /// Repays up to `amount` (type(uint256).max repays everything); returns the amount repaid.
    function repay(address asset, uint256 amount, uint256 interestRateMode, address onBehalfOf)
        external
        returns (uint256)
    {
        if (interestRateMode != 1 && interestRateMode != 2) revert InvalidInterestRateMode();
        uint256 paid = _reduceDebt(asset, onBehalfOf, amount);
        emit Repay(asset, onBehalfOf, msg.sender, paid, false);
        return paid;
    }

    /// Repays the caller's debt with the caller's supplied balance of the same asset.
    function repayWithATokens(address asset, uint256 amount, uint256 interestRateMode) external returns (uint256) {
        if (interestRateMode != 1 && interestRateMode != 2) revert InvalidInterestRateMode();
        uint256 paid = _min(amount, debtBalance[asset][msg.sender]);
        if (collateralBalance[asset][msg.sender] < paid) revert NotEnoughCollateral();
        collateralBalance[asset][msg.sender] -= paid;
        AccountData storage a = accounts[msg.sender];
        a.totalCollateralBase = _subFloor(a.totalCollateralBase, paid);
        _reduceDebt(asset, msg.sender, paid);
        emit Repay(asset, msg.sender, msg.sender, paid, true);
        return paid;
    }

    /// Liquidates `user` when its health factor is below 1.0. At most 50% of the user's debt in
    /// `debtAsset` is covered while the health factor is above 0.95, up to 100% below that;
    /// a larger `debtToCover` is capped, as in Aave. The liquidator receives the covered debt
    /// plus a 5% bonus in collateral (capped at what the user has), as aTokens
    /// (`collateralBalance`) or as underlying (`walletBalance`).
    function liquidationCall(
        address collateralAsset,
        address debtAsset,
        address user,
        uint256 debtToCover,
        bool receiveAToken
    ) external {
        AccountData storage a = accounts[user];
        uint256 hf = _healthFactor(a);
        if (hf >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD) revert HealthFactorNotBelowThreshold();
        uint256 userDebt = debtBalance[debtAsset][user];
        if (userDebt == 0) revert SpecifiedCurrencyNotBorrowedByUser();
        uint256 userCollateral = collateralBalance[collateralAsset][user];
        if (userCollateral == 0) revert CollateralCannotBeLiquidated();

        uint256 closeFactor =
            hf > CLOSE_FACTOR_HF_THRESHOLD ? DEFAULT_LIQUIDATION_CLOSE_FACTOR_BPS : MAX_LIQUIDATION_CLOSE_FACTOR_BPS;
        uint256 debtAmount = _min(debtToCover, (userDebt * closeFactor) / 10_000);
        uint256 collateralAmount = (debtAmount * LIQUIDATION_BONUS_BPS) / 10_000;
        if (collateralAmount > userCollateral) {
            collateralAmount = userCollateral;
            debtAmount = (collateralAmount * 10_000) / LIQUIDATION_BONUS_BPS;
        }

        debtBalance[debtAsset][user] = userDebt - debtAmount;
        collateralBalance[collateralAsset][user] = userCollateral - collateralAmount;
        a.totalDebtBase = _subFloor(a.totalDebtBase, debtAmount);
        a.totalCollateralBase = _subFloor(a.totalCollateralBase, collateralAmount);
        if (receiveAToken) {
            collateralBalance[collateralAsset][msg.sender] += collateralAmount;
        } else {
            walletBalance[collateralAsset][msg.sender] += collateralAmount;
        }
        emit LiquidationCall(
            collateralAsset, debtAsset, user, debtAmount, collateralAmount, msg.sender, receiveAToken
        );
    }

    // ---- internals ---------------------------------------------------------------------------

    function _healthFactor(AccountData storage a) private view returns (uint256) {
        return a.configured ? a.healthFactor : type(uint256).max;
    }

    function _reduceDebt(address asset, address user, uint256 amount) private returns (uint256 paid) {
        paid = _min(amount, debtBalance[asset][user]);
        debtBalance[asset][user] -= paid;
        AccountData storage a = accounts[user];
        a.totalDebtBase = _subFloor(a.totalDebtBase, paid);
    }

    function _min(uint256 x, uint256 y) private pure returns (uint256) {
        return x < y ? x : y;
    }

    function _subFloor(uint256 x, uint256 y) private pure returns (uint256) {
        return x > y ? x - y : 0;
    }
}
