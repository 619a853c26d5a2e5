// A configuration of an nnU-Net plans.json with "inherits_from" resolved, as nnU-Net's
// PlansManager does (the child's keys win over its parent's). Shared by the network builder and
// the trainer. Throws umamba::Error naming the configuration (and the available ones) when it is
// missing, and when the inheritance loops.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace umamba::model {

nlohmann::json resolve_plans_configuration(const nlohmann::json& plans, const std::string& name);

}  // namespace umamba::model
