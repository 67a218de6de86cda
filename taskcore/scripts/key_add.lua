if not add_key() then return 0 end
return 1