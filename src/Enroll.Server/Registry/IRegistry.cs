namespace Enroll.Server.Registry;

/// <summary>
/// A whole store: every aggregate of the registry in one database, which owns its connections (disposed with it).
/// <see cref="RegistryServices.AddEnrollRegistry"/> registers one store and forwards each aggregate interface to it; a
/// consumer takes only the aggregate it uses (<see cref="IProvisioningTokenStore"/>, <see cref="IDeviceStore"/>,
/// <see cref="IOperationStore"/>, <see cref="IMessageStore"/>). A store is held to the contract suite
/// (<c>tests/Enroll.Server.Tests/Registry/Contract</c>); <see cref="SqliteRegistry"/> is the default.
/// </summary>
internal interface IRegistry : IProvisioningTokenStore, IDeviceStore, IOperationStore, IMessageStore, IKeyStore, ICredentialFailureStore, ITwinStore, ICommandStore, ICommandRolloutStore, IFileStore, IOperatorStore, IAuditStore, IRefusalStore, IDeviceStatusStore, IAsyncDisposable;
