namespace Enroll.Server.Registry;

/// <summary>What devices last reported of themselves (their outbox), and a device's registration history (issue 15).</summary>
internal interface IDeviceStatusStore;
