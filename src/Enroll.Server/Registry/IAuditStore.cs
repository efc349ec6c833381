namespace Enroll.Server.Registry;

/// <summary>The audit log: every operator action, who, when, what and from where (issue 15).</summary>
internal interface IAuditStore;
